"""Runs the Trainer's run_fn outside TFX, on a finished pipeline run's artifacts.

    python run_trainer.py PIPELINE_ROOT OUT_DIR CUSTOM_CONFIG_JSON

Used by tests that must run training in a process of its own: to kill it
mid-run, or to give TensorFlow logical devices before it starts.
"""

import glob
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfx import v1 as tfx  # noqa: E402
from tfx.components.util import examples_utils, tfxio_utils  # noqa: E402
from tfx.proto import example_gen_pb2  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402

from fakeface.components.trainer import training  # noqa: E402


def main(pipeline_root: str, out_dir: str, custom_config: str) -> None:
    (examples_uri,) = glob.glob(os.path.join(pipeline_root, "ImageExampleGen", "examples", "*"))
    (transform_uri,) = glob.glob(os.path.join(pipeline_root, "Transform", "transform_graph", "*"))
    examples = standard_artifacts.Examples()
    examples.uri = examples_uri
    examples.split_names = '["train", "eval", "test"]'
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    data_accessor = tfx.components.DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=tfxio_utils.get_record_batch_factory_from_artifact([examples], []),
        data_view_decode_fn=None)
    run_dir = os.path.join(out_dir, "Trainer", "model_run", "1")
    training.run_fn(tfx.components.FnArgs(
        train_files=[os.path.join(examples_uri, "Split-train", "*")],
        eval_files=[os.path.join(examples_uri, "Split-eval", "*")],
        transform_output=transform_uri,
        serving_model_dir=os.path.join(out_dir, "serving"),
        model_run_dir=run_dir,
        custom_config=json.loads(custom_config),
        data_accessor=data_accessor))


if __name__ == "__main__":
    main(*sys.argv[1:])
