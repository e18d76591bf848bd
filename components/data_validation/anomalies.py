"""ExampleValidator's and DistributionValidator's anomalies, read with TFDV's loader and classified.

Each anomaly becomes one line: the feature, what the schema (or the drift
threshold) expects and what the examples hold, with the splits it was found
in. Its severity is TFDV's for a schema anomaly and the configured one for
drift; the configured `fail_on` severities block the run, the others warn.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from tensorflow_data_validation.utils import anomalies_util
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.types import artifact_utils

SCHEMA = "schema"
DRIFT = "drift"
SEVERITIES = tuple(anomalies_pb2.AnomalyInfo.Severity.keys())  # UNKNOWN, WARNING, ERROR
# Where ExampleValidator writes a split's anomalies, and DistributionValidator a split pair's.
_FOLDER_PREFIX = {SCHEMA: "Split-", DRIFT: "SplitPair-"}
_FILE_NAME = "SchemaDiff.pb"
_DATASET = "(every example)"


@dataclasses.dataclass(frozen=True)
class Anomaly:
    check: str  # SCHEMA or DRIFT
    feature: str
    kind: str  # TFDV's anomaly type, such as ENUM_TYPE_UNEXPECTED_STRING_VALUES
    severity: str  # one of SEVERITIES
    expected: str
    found: str
    splits: Tuple[str, ...]

    def line(self) -> str:
        where = ", ".join(self.splits) + (" splits" if len(self.splits) > 1 else " split")
        return f"{self.feature}: expected {self.expected}; found {self.found} ({self.check}, {where}, {self.severity})"


def _domain(schema: schema_pb2.Schema, feature: schema_pb2.Feature) -> Optional[str]:
    if feature.HasField("domain"):
        values = next((d.value for d in schema.string_domain if d.name == feature.domain), [])
        return "one of " + ", ".join(values)
    if feature.HasField("string_domain"):
        return "one of " + ", ".join(feature.string_domain.value)
    if feature.HasField("int_domain"):
        bounds = feature.int_domain
        if bounds.HasField("min") and bounds.HasField("max"):
            return f"an integer from {bounds.min} to {bounds.max}"
        if bounds.HasField("min"):
            return f"an integer of at least {bounds.min}"
        if bounds.HasField("max"):
            return f"an integer of at most {bounds.max}"
    return None


def expectation(schema: schema_pb2.Schema, name: str) -> str:
    """What the schema asks of a feature, in words."""
    feature = next((f for f in schema.feature if f.name == name), None)
    if feature is None:
        return "no such feature (the schema does not list it)"
    kind = schema_pb2.FeatureType.Name(feature.type)
    parts = [_domain(schema, feature) or f"a {kind} value"]
    if feature.presence.min_fraction >= 1.0:
        parts.append("in every example")
    return ", ".join(parts)


def _measurement(anomalies: anomalies_pb2.Anomalies, name: str):
    for info in anomalies.drift_skew_info:
        if ".".join(info.path.step) == name and info.drift_measurements:
            return info.drift_measurements[0]
    return None


def _drift_expectation(anomalies: anomalies_pb2.Anomalies, name: str) -> str:
    measurement = _measurement(anomalies, name)
    if measurement is None:
        return "a distribution comparable with the served model's training data"
    return f"an L-infinity distance of at most {measurement.threshold:g} from the served model's training data"


def _found(reason: anomalies_pb2.AnomalyInfo.Reason) -> str:
    return (reason.description or reason.short_description).strip().rstrip(".")


def _drift_found(anomalies: anomalies_pb2.Anomalies, name: str, reason: anomalies_pb2.AnomalyInfo.Reason) -> str:
    """The distance, and the value whose share moved most, which TFDV names in its description."""
    measurement = _measurement(anomalies, name)
    if measurement is None:  # the comparison could not be made: TFDV says why
        return _found(reason)
    _, _, value = _found(reason).partition("maximum difference is: ")
    return f"{measurement.value:.4g}" + (f", most of all in the share of {value}" if value else "")


def from_anomalies(anomalies: anomalies_pb2.Anomalies, check: str, split: str,
                   schema: schema_pb2.Schema, drift_severity: str) -> List[Anomaly]:
    """One Anomaly per reason TFDV gives, for every feature and the dataset as a whole."""
    found = []
    infos = list(anomalies.anomaly_info.items())
    if anomalies.HasField("dataset_anomaly_info"):
        infos.append((_DATASET, anomalies.dataset_anomaly_info))
    for name, info in infos:
        severity = drift_severity if check == DRIFT else anomalies_pb2.AnomalyInfo.Severity.Name(info.severity)
        expected = _drift_expectation(anomalies, name) if check == DRIFT else expectation(schema, name)
        for reason in info.reason:
            kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
            what = _drift_found(anomalies, name, reason) if check == DRIFT else _found(reason)
            found.append(Anomaly(check, name, kind, severity, expected, what, (split,)))
    return found


def merged(anomalies: Iterable[Anomaly]) -> List[Anomaly]:
    """The same anomaly of several splits as one, naming them; the first split's description stands."""
    by_key: Dict[Tuple[str, str, str], Anomaly] = {}
    for anomaly in anomalies:
        key = (anomaly.check, anomaly.feature, anomaly.kind)
        if key in by_key:
            by_key[key] = dataclasses.replace(by_key[key], splits=by_key[key].splits + anomaly.splits)
        else:
            by_key[key] = anomaly
    return list(by_key.values())


def read(artifact, check: str, schema: schema_pb2.Schema, drift_severity: str) -> List[Anomaly]:
    """Every anomaly of an ExampleAnomalies artifact, split by split, with TFDV's loader."""
    found = []
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact.uri, _FOLDER_PREFIX[check] + split, _FILE_NAME)
        # A split pair is named "<this run's split>_<the baseline's split>".
        label = split.rsplit("_", 1)[0] if check == DRIFT else split
        found.extend(from_anomalies(anomalies_util.load_anomalies_binary(path), check, label, schema,
                                    drift_severity))
    return found


def blocking(anomalies: Sequence[Anomaly], fail_on: Sequence[str]) -> Tuple[List[Anomaly], List[Anomaly]]:
    """(the anomalies that stop the run, the ones that warn)."""
    return ([a for a in anomalies if a.severity in fail_on],
            [a for a in anomalies if a.severity not in fail_on])
