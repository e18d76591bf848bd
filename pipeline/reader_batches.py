"""TFX's example readers batched by bytes, so that a step's memory does not follow the images' size.

StatisticsGen and the Evaluator read the examples through tfx_bsl's
`BeamSource()` without a batch size, which lets Beam grow each batch up to
1,000 examples: 60 MB of 512 px JPEGs, gigabytes of the founding notes'
1024 px files, and a peak that jumps from run to run with the batches Beam
happens to form. tfx_bsl batches by bytes (20 MiB) when its absl flag
`--tfxio_use_byte_size_batching` is on, and reads that flag only once absl's
flags count as parsed. Set here in the process that runs the steps: the local
runner's, or a Kubeflow task's. Beam workers in processes of their own (the
DirectRunner's multi_processing mode, Dataflow) keep Beam's batching.
"""

from absl import flags


def by_bytes() -> None:
    from tfx_bsl.coders import batch_util  # noqa: F401  (defines the flag)

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    flags.FLAGS.tfxio_use_byte_size_batching = True
