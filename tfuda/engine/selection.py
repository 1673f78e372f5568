"""Which evaluated EMA weights become the run's model: the last, or the best by a label-free validator.

`--select last` (the default) keeps the final EMA weights. `--select NAME` keeps the EMA weights
of the evaluation with the highest score of validator NAME (`tfuda.validate.SCORES`) among the
evaluations whose predictions raised no collapse alarm. The candidate is written to
`RUN/selected/` (`model.keras` and `selection.json`) whenever it changes, so it survives a killed
run and `--resume`, and `--on-collapse rollback` can fall back to it when a later evaluation
collapses (under `--select last` the candidate is then the last evaluation before the collapse).
Target labels never enter the choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from tfuda.atomic import copy_atomic, save_model_atomic, write_json_atomic
from tfuda.config import SELECT_LAST as LAST
from tfuda.rundir import RunDir


class Selection:
    """Keeps the selected evaluation of a run on disk.

    Args:
      by: `last` or a validator name (`tfuda.validate.SCORES`), higher is better.
      run: the run directory; the candidate lives in `RUN/selected/`.
      keep: write candidates to disk (needed for `--select NAME` and `--on-collapse rollback`;
        with `--select last` alone the final weights are the choice and nothing is written).
    """

    def __init__(self, by: str, run: RunDir, keep: bool):
        self.by, self.keep = by, keep
        self.directory = run.path / "selected"
        self.model_file = self.directory / "model.keras"
        self.record_file = self.directory / "selection.json"
        self.evaluations = 0
        self.chosen: dict[str, Any] | None = None
        if keep and self.record_file.is_file():  # a resumed run keeps its earlier choice
            self.chosen = RunDir(self.directory).read_json(self.record_file)
            self.evaluations = self.chosen["evaluations"]

    def offer(self, step: int, scores: dict[str, float], alarm: str | None, model: keras.Model) -> None:
        """Considers the evaluation at `step` (its validator `scores`, its collapse `alarm`)."""
        self.evaluations += 1
        if not self.keep or alarm is not None:
            return
        score = scores.get(self.by) if self.by != LAST else None
        if self.by != LAST and self.chosen is not None and score <= self.chosen["score"]:
            return
        save_model_atomic(model, self.model_file)
        self.chosen = {"by": self.by, "step": step, "score": score, "evaluations": self.evaluations}
        write_json_atomic(self.record_file, self.chosen)

    def uses_candidate(self, rolled_back: bool) -> bool:
        """True when the run's model is the stored candidate rather than the final weights."""
        return self.chosen is not None and (rolled_back or self.by != LAST)

    def publish(self, model_file: Path) -> None:
        """Copies the stored candidate to `model_file` atomically."""
        copy_atomic(self.model_file, model_file)

    def load(self) -> keras.Model:
        """The stored candidate model."""
        return RunDir(self.directory).load_model()

    def summary(self, final_step: int, rolled_back: bool) -> dict[str, Any]:
        """`metrics.json`'s `selection`: which evaluation's weights the run's model holds, and why."""
        if self.uses_candidate(rolled_back):
            step, score = self.chosen["step"], self.chosen["score"]
            if rolled_back and self.by == LAST:
                why = f"rolled back to the last evaluation before the collapse alarm (step {step})"
            else:
                why = (f"highest {self.by} ({score:.4f}) of {self.evaluations} evaluations without a collapse alarm"
                       + (", then rolled back at the collapse alarm" if rolled_back else ""))
            return {"by": self.by, "step": step, "score": score, "reason": why}
        if self.by == LAST:
            return {"by": LAST, "step": final_step, "score": None, "reason": "the final EMA weights (--select last)"}
        return {"by": self.by, "step": final_step, "score": None,
                "reason": "every evaluation raised the collapse alarm: the final EMA weights are kept"}
