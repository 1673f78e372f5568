"""What a finished run should tell its user next, read from its evaluations without target labels.

Two cases users cannot see in the final numbers:

* **not done**: `bnm` (the validator that ranks runs best, docs/benchmarks.md) rose by at least
  `RISE` of its value from the evaluation at half the run to the last, and did not fall over
  the last interval. Chosen on the MNIST tasks' runs (docs/benchmarks.md, *Default budget*):
  AdaMatch at 1,200 steps on a 4,000-image target rose 8-12% in its second half and gained 6-10
  points of target accuracy with 3,333 steps; at 3,333 steps its `bnm` had flattened (-0.3%);
  source-only runs, which gain nothing from more steps, rose under 4% or fell at the end.
* **worse than its start**: a run from an existing model (`--init`, source-free methods) whose
  held-out labeled source accuracy, or estimated target accuracy (`est_accuracy`), fell by more
  than `SOURCE_DROP`. The label-free target scores cannot show this (a collapsing SHOT run raised
  every one of them), but a few labeled source images can: give `--eval-source`.
"""

from __future__ import annotations

from tfuda.validate import ESTIMATE

RISE = 0.05
"""Relative gain of `bnm` over the second half of a run above which it counts as still rising."""
SOURCE_DROP = 0.05
"""Fall of held-out source accuracy or estimated target accuracy from the start (absolute) that a
run reports as a loss."""
DROPS = (("eval/source_accuracy", "accuracy on the held-out labeled source"),
         (f"validators/{ESTIMATE}", "estimated target accuracy (no labels)"))
WATCHED = "validators/bnm"


def rising_span(history: list[dict], key: str = WATCHED) -> list[dict] | None:
    """The evaluations (after the start) from half the run to its end when `key` rose over them
    by at least `RISE` without falling over the last interval; None otherwise."""
    points = [e for e in history if e["step"] > 0 and e.get(key) is not None]
    if len(points) < 2:
        return None
    half = points[-1]["step"] / 2
    first = max((i for i, e in enumerate(points) if e["step"] <= half), default=0)
    if first == len(points) - 1:
        return None
    start, before, end = points[first][key], points[-2][key], points[-1][key]
    if (end - start) / max(abs(start), 1e-12) >= RISE and end >= before:
        return points[first:]
    return None


def start_of(history: list[dict]) -> dict | None:
    """The evaluation of the model a run started from (its step-0 entry), or None."""
    return history[0] if history and history[0]["step"] == 0 else None


def advice(history: list[dict], steps: int) -> list[str]:
    """The lines a finished run ends with (none when there is nothing to say).

    Args:
      history: the run's evaluations (`metrics.json` `eval_history`), a step-0 entry when the
        run started from an existing model.
      steps: the steps the run trained.
    """
    lines = []
    recent = rising_span(history)
    if recent is not None:
        trail = " -> ".join(f"{e[WATCHED]:.4f}" for e in recent)
        lines.append(f"advice: the label-free scores were still rising at the end (bnm {trail} at steps "
                     f"{', '.join(str(e['step']) for e in recent)}): the run is likely not done; try --steps "
                     f"{2 * steps} (a new run, or --resume --steps {2 * steps} to continue this one)")
    start = start_of(history)
    for key, what in DROPS:
        if start is not None and start.get(key) is not None and history[-1].get(key) is not None:
            before, after = start[key], history[-1][key]
            if before - after > SOURCE_DROP:
                lines.append(f"warning: {what} fell from {before:.4f} at the start to {after:.4f}: adaptation "
                             "likely made this model worse; compare it with the model it started from before "
                             "deploying it")
    return lines
