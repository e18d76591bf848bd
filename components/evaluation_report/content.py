"""What one evaluation report holds: the Evaluator's verdict and the model's scores."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, List, Optional

from fakeface.components.evaluation_report import tables


@dataclasses.dataclass
class Report:
    """Everything the page, the JSON and the CSVs show about one model."""

    model_uri: str
    model_version: str  # when it was trained
    threshold: float
    decision: Dict[str, Any]  # how the threshold was chosen (training.json)
    blessed: Optional[bool]
    failures: List[str]  # why the model was not blessed, one line per failed check
    slices: List[Dict[str, Any]]  # TFMA: {"slice": ..., metric: value, ...}
    predictions: List[Dict[str, Any]]  # one per test image, with a score per column
    columns: List[str]
    # Per score column: the threshold its accuracies are read at and how it was chosen.
    column_decisions: Dict[str, Dict[str, Any]]
    settings: Dict[str, Any]  # the robustness, TTA and blessing settings used
    training_curves_png: Optional[bytes] = None
    # The version TF Serving serves it under; "" while it is not pushed.
    served_version: str = ""
    # DataValidation's validation.json: what was checked and what warned.
    validation: Optional[Dict[str, Any]] = None

    # Derived once: the page, the JSON and the CSVs each read them several times.
    @functools.cached_property
    def sources(self) -> List[Dict[str, Any]]:
        return tables.source_rows(self.predictions, {c: self.column_decisions[c]["threshold"] for c in self.columns},
                                  int(self.settings.get("min_real_images") or 1))

    @functools.cached_property
    def overall(self) -> Dict[str, Any]:
        return tables.overall_metrics(self.predictions, self.threshold)
