"""The example readers of StatisticsGen and the Evaluator batch by bytes in the runner's process."""

import subprocess
import sys

_EXAMPLE_BYTES = 60_000  # a 512 px JPEG of the sample data
_READ = """
import sys
import numpy as np
import tensorflow as tf
import apache_beam as beam
from tfx_bsl.public import tfxio
from fakeface.pipeline import reader_batches

reader_batches.by_bytes()
path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with tf.io.TFRecordWriter(path) as writer:
    for i in range(count):
        image = tf.train.Feature(bytes_list=tf.train.BytesList(value=[np.random.default_rng(i).bytes(size)]))
        writer.write(tf.train.Example(features=tf.train.Features(feature={"image_bytes": image})).SerializeToString())
with beam.Pipeline() as p:
    _ = (p | tfxio.TFExampleRecord(file_pattern=path, telemetry_descriptors=["test"]).BeamSource()
         | beam.Map(lambda batch: batch.num_rows) | beam.combiners.Top.Largest(1)
         | beam.Map(lambda largest: print(largest[0], flush=True)))
"""


def test_the_readers_batches_stay_within_20_mib_however_many_examples(tmp_path):
    # Beam's own sizing, which TFX's reader asks for, made the largest batch of
    # these anywhere from 73 to 705 examples (42 MB) between runs here.
    run = subprocess.run([sys.executable, "-c", _READ, str(tmp_path / "examples.tfrecord"), "2000",
                          str(_EXAMPLE_BYTES)], capture_output=True, text=True, check=True)
    largest = int(run.stdout.split()[-1])
    assert 300 <= largest <= (20 << 20) // _EXAMPLE_BYTES + 1
