"""ImageExampleGen: ingests the image datasets of a catalog into split tf.Examples."""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from fakeface import features
from fakeface.components.image_example_gen import driver, executor


class ImageExampleGen(FileBasedExampleGen):
    """Reads every image of every catalog dataset into tf.Examples.

    Each example keeps the original encoded bytes and the dataset's label,
    source, generator and shot; files that are not images by the image
    contract (fakeface/images.py) are quarantined. Splits are hash buckets of the picture's
    perceptual hash, so an image always lands in the same split however the
    datasets grow, and its re-encoded or resized copies mostly land with it.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.CatalogDriver

    def __init__(self, catalog_path: str, split_buckets: Mapping[str, int],
                 ingest_options: Optional[Mapping[str, Any]] = None):
        """
        Args:
          catalog_path: the catalog YAML file (see fakeface/catalog.py).
          split_buckets: output split name to its number of hash buckets, e.g.
            {"train": 56, "eval": 24, "test": 20}.
          ingest_options: fields of pipeline/config.py's IngestConfig (limits,
            re-encoding, the decoder's time limit, the shortcut warning level);
            defaults where left out.
        """
        # The catalog file is the input split, so that the stock drivers of
        # other orchestrators (Kubeflow's) find and fingerprint it too.
        input_config = example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="catalog", pattern=os.path.basename(catalog_path))])
        output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
                    for name, buckets in split_buckets.items()],
            partition_feature_name=features.PERCEPTUAL_HASH))
        super().__init__(input_base=os.path.dirname(catalog_path),
                         input_config=input_config, output_config=output_config,
                         custom_config={"ingest": dict(ingest_options or {})})
