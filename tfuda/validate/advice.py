"""What a finished run should tell its user next, read from its evaluations without target labels.

Two cases users cannot see in the final numbers:

* **not done**: `bnm` (the validator that ranks runs best, docs/benchmarks.md) still rose over
  each of the last two evaluation intervals by at least `RISING_PER_1000` of its value per 1000
  steps. On `digits` -> `mnist` AdaMatch's `bnm` rose 10% and 6% per 500 steps while its target
  accuracy climbed, and moved by less than 1% once it had flattened; source-only runs wander by a
  few percent between single intervals, hence two intervals.
* **worse than its start**: a run from an existing model (`--init`, source-free methods) whose
  held-out labeled source accuracy fell by more than `SOURCE_DROP`. The label-free target scores
  cannot show this (a collapsing SHOT run raised every one of them), but a few labeled source
  images can: give `--eval-source`.
"""

from __future__ import annotations

RISING_PER_1000 = 0.04
"""Relative gain of `bnm` per 1000 steps above which an interval counts as rising."""
SOURCE_DROP = 0.05
"""Fall of held-out source accuracy from the start (absolute) that a run reports as a loss."""
WATCHED = "validators/bnm"


def still_rising(history: list[dict], key: str = WATCHED) -> bool:
    """Whether `key` rose over each of the last two intervals between evaluations after the start
    (one interval when there are only two such evaluations)."""
    points = [(e["step"], e[key]) for e in history if e["step"] > 0 and e.get(key) is not None]
    if len(points) < 2:
        return False
    recent = points[-3:]
    return all((b - a) / max(abs(a), 1e-12) * 1000 / (t - s) >= RISING_PER_1000
               for (s, a), (t, b) in zip(recent, recent[1:]))


def advice(history: list[dict], steps: int) -> list[str]:
    """The lines a finished run ends with (none when there is nothing to say).

    Args:
      history: the run's evaluations (`metrics.json` `eval_history`), a step-0 entry when the
        run started from an existing model.
      steps: the steps the run trained.
    """
    lines = []
    if still_rising(history):
        recent = [e for e in history if e["step"] > 0][-3:]
        trail = " -> ".join(f"{e[WATCHED]:.4f}" for e in recent)
        lines.append(f"advice: the label-free scores were still rising at the end (bnm {trail} at steps "
                     f"{', '.join(str(e['step']) for e in recent)}): the run is likely not done; try --steps "
                     f"{2 * steps} (a new run, or --resume --steps {2 * steps} to continue this one)")
    start = history[0] if history and history[0]["step"] == 0 else None
    key = "eval/source_accuracy"
    if start is not None and start.get(key) is not None and history[-1].get(key) is not None:
        before, after = start[key], history[-1][key]
        if before - after > SOURCE_DROP:
            lines.append(f"warning: accuracy on the held-out labeled source fell from {before:.4f} at the start to "
                         f"{after:.4f}: adaptation likely made this model worse; compare it with the model it "
                         "started from before deploying it")
    return lines
