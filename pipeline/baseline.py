"""Which model the Evaluator compares a candidate against."""

from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.orchestration import metadata

CANDIDATE = "candidate"


class PreviousBlessedModelStrategy(LatestBlessedModelStrategy):
    """The latest blessed model other than the candidate itself.

    With the stock strategy, re-running an unchanged pipeline finds the cached
    candidate already blessed, evaluates it against itself and pushes it a
    second time. Excluding the candidate keeps the Evaluator's inputs, and so
    its cache entry, the same as on the run that first blessed it.

    Inputs: `model` and `model_blessing` (all of them, from unattached
    channels) and `candidate` (the Trainer's output).
    """

    def resolve_artifacts(self, store: metadata.Metadata,
                          input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        candidate_ids = {a.id for a in input_dict.get(CANDIDATE, [])}
        others = {key: [a for a in artifacts if a.id not in candidate_ids] if key == "model" else artifacts
                  for key, artifacts in input_dict.items() if key != CANDIDATE}
        resolved = super().resolve_artifacts(store, others)
        # Every input key must come out again, the candidate unchanged.
        resolved[CANDIDATE] = input_dict.get(CANDIDATE, [])
        return resolved
