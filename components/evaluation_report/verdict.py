"""What the Evaluator decided, read from its TFMA output: every slice's metrics and why a model was refused."""

from __future__ import annotations

import math
from typing import Any, Dict, List

from fakeface.pipeline import evaluation


def _slice_name(slice_key) -> str:
    if not slice_key:
        return "overall"
    return ", ".join(f"{name}={value.decode() if isinstance(value, bytes) else value}"
                     for name, value in slice_key)


def _metric_name(key: str) -> str:
    # TFMA names a metric with one threshold "precision@0.5"; every threshold
    # here is the shipped one, so the suffix carries nothing.
    return key.split("@")[0]


def _undefined_as_nan(row: Dict[str, Any]) -> Dict[str, Any]:
    """The metrics a one-class slice cannot measure, as NaN rather than TFMA's 0."""
    share_fake = row.get(evaluation.MEAN_LABEL)
    undefined = {0.0: evaluation.UNDEFINED_WITHOUT_FAKES, 1.0: evaluation.UNDEFINED_WITHOUT_REALS}.get(share_fake, ())
    return {name: math.nan if name in undefined else value for name, value in row.items()}


def tfma_slices(evaluation_uri: str) -> List[Dict[str, Any]]:
    """One row per TFMA slice: its name and every scalar metric of both outputs, NaN where undefined."""
    import tensorflow_model_analysis as tfma

    rows = []
    for slice_key, by_output in tfma.load_eval_result(evaluation_uri).slicing_metrics:
        row: Dict[str, Any] = {"slice": _slice_name(slice_key)}
        for by_sub_key in by_output.values():
            for values in by_sub_key.values():
                for key, value in values.items():
                    if "doubleValue" in value:
                        row[_metric_name(key)] = float(value["doubleValue"])
        rows.append(_undefined_as_nan(row))
    return sorted(rows, key=lambda r: (r["slice"] != "overall", r["slice"].count(","), r["slice"]))


def _bound(threshold) -> str:
    if threshold.HasField("value_threshold"):
        bound = threshold.value_threshold
        parts = []
        if bound.HasField("lower_bound"):
            parts.append(f"at least {bound.lower_bound.value:g}")
        if bound.HasField("upper_bound"):
            parts.append(f"at most {bound.upper_bound.value:g}")
        return " and ".join(parts)
    return f"no worse than the baseline's by more than {-threshold.change_threshold.absolute.value:g}"


def validation_failures(evaluation_uri: str) -> List[str]:
    """Why TFMA did not bless the model, one sentence per failed check and slice."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_validation_result(evaluation_uri)
    if result.validation_ok:
        return []
    messages = []
    for per_slice in result.metric_validations_per_slice:
        slice_key = tfma.slicer.deserialize_slice_key(per_slice.slice_key)
        for failure in per_slice.failures:
            name = failure.metric_key.name
            what = "change against the baseline" if failure.metric_key.is_diff else name
            messages.append(f"{what} is {failure.metric_value.double_value.value:.4f} on slice "
                            f"{_slice_name(slice_key)}: must be {_bound(failure.metric_threshold)}")
    for missing in result.missing_slices:
        messages.append(f"slice {missing} has no test images, so it could not be checked")
    return messages or ["the Evaluator did not bless the model (no failed check was recorded)"]
