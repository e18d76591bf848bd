"""Executor of CuratedSchemaGen: the schema shipped inside the installed package."""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from fakeface import schemas

SCHEMA_KEY = "schema"
SCHEMA_SHA256_KEY = "schema_sha256"
# The file name TFX's SchemaGen and ImportSchemaGen write, which every reader expects.
SCHEMA_FILE_NAME = "schema.pbtxt"


class SchemaMismatch(RuntimeError):
    """The installed package carries another schema than the pipeline was built with."""


def schema_sha256(path: str = schemas.SCHEMA_PATH) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        found = schema_sha256()
        expected = exec_properties[SCHEMA_SHA256_KEY]
        if found != expected:
            raise SchemaMismatch(
                f"{schemas.SCHEMA_PATH} has SHA-256 {found}, but the pipeline was built with the "
                f"schema {expected}: the image and the compiled pipeline come from different "
                "versions of fakeface; rebuild the image or compile again")
        io_utils.SchemaReader().read(schemas.SCHEMA_PATH)  # a parseable Schema proto
        output_uri = os.path.join(artifact_utils.get_single_uri(output_dict[SCHEMA_KEY]), SCHEMA_FILE_NAME)
        io_utils.copy_file(schemas.SCHEMA_PATH, output_uri, overwrite=True)
        logging.info("Schema %s (SHA-256 %s) written to %s", schemas.SCHEMA_PATH, found, output_uri)
