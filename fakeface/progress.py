"""Progress that a long step reports to whoever runs it, through one Python logger.

The Trainer reports every finished epoch here. `fakeface run` shows the latest
on its Trainer line; anywhere else (Kubeflow, tests) these are ordinary INFO
records of the logger "fakeface.progress".
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional

LOGGER = logging.getLogger("fakeface.progress")
# INFO, whatever the root logger's level: a listener must see every epoch.
LOGGER.setLevel(logging.INFO)


def epoch_ended(epoch: int, epochs: int, metrics: Optional[Mapping[str, float]] = None) -> None:
    """Reports that `epoch` (counted from 1) of `epochs` is done, with its Keras metrics."""
    metrics = {name: float(value) for name, value in (metrics or {}).items()}
    LOGGER.info("epoch %d/%d: %s", epoch, epochs,
                ", ".join(f"{name} {value:.4f}" for name, value in sorted(metrics.items())),
                extra={"epoch": epoch, "epochs": epochs, "metrics": metrics})
