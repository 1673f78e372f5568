"""The default training budget, set by the data: passes over the unlabeled target.

A run without `--steps` trains for as many steps as the default method (AdaMatch, 3 unlabeled
images per labeled one) needs for `PASSES` passes over the target's training images,

    steps = round(PASSES * N_target / (3 * batch)),       batch = `--batch-size` x replicas,

held within `[MIN_STEPS, MAX_STEPS]`. Every method gets the same steps on the same data and batch
(as under the earlier fixed default), so a source-only baseline trains as long as the adaptation
it is compared with; a method with another `uratio` sees more or fewer target images per step.
On 4,000-image targets the earlier fixed 1,200 steps were 7 passes and AdaMatch was still
climbing; 20 passes closed the gap (docs/benchmarks.md, *Default budget*). The floor is a number
of steps, not of passes: AdaMatch on the small built-in targets (585-1,437 images) was still
climbing at 1,200 steps (20-50 passes) and closed more of the gap at 2,400, so no target trains
fewer. The ceiling bounds a CPU run on a large folder (give `--steps` for more; the run's advice
says when its label-free scores were still rising).
"""

from __future__ import annotations

import dataclasses

PASSES = 20
"""Passes over the unlabeled target images of a run at the default budget."""
UNLABELED_PER_LABELED = 3
"""The default method's unlabeled images per labeled one (AdaMatch's `uratio`)."""
MIN_STEPS = 2400
"""Floor: targets of up to 2,880 images at batch 8 (20 passes would be fewer steps) train this long."""
MAX_STEPS = 10_000
"""Ceiling: a large target's default run stays within about 20 minutes at batch 8 on 2 CPU cores
with cnn-small (larger models take longer)."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """A run's number of steps and why, as printed in its first line."""

    steps: int
    reason: str
    given: bool = False
    """True when `--steps` (or `steps=`) set it; `reason` then says what the default would be."""

    def line(self) -> str:
        """The line a run starts with."""
        return f"budget: {self.reason}" + ("" if self.given else "; --steps sets it")


def default_budget(target_images: int | None, batch_size: int, seen_per_step: int | None = None) -> Budget:
    """The steps of a run given no `--steps`.

    Args:
      target_images: the target's training images (None: unknown, e.g. a streamed dataset of
        unknown size).
      batch_size: labeled images per step over all replicas.
      seen_per_step: unlabeled target images the run's method takes a step (its `uratio` x
        `batch_size`; 0 for source-only), when not the default method's: the steps stay the
        default method's, the reason says both.
    """
    unlabeled_per_step = UNLABELED_PER_LABELED * batch_size
    if target_images is None:
        return Budget(MIN_STEPS, f"{MIN_STEPS} steps (the floor: the target's size is unknown)")
    passes = int(PASSES * target_images / unlabeled_per_step + 0.5)
    steps = min(MAX_STEPS, max(MIN_STEPS, passes))
    bound = "" if steps == passes else \
        f", the {'floor' if steps == MIN_STEPS else 'ceiling'} ({passes} steps would be {PASSES} passes)"
    done = steps * unlabeled_per_step / target_images
    if seen_per_step is None or seen_per_step == unlabeled_per_step:
        return Budget(steps, f"{steps} steps = {done:.0f} passes over the {target_images:,} unlabeled target images "
                             f"at {unlabeled_per_step} a step{bound}")
    this = f"; this method takes {seen_per_step} a step: {steps * seen_per_step / target_images:.0f} passes" \
        if seen_per_step else "; this method takes none"
    return Budget(steps, f"{steps} steps, the default method's for this data ({done:.0f} passes over the "
                         f"{target_images:,} unlabeled target images at {unlabeled_per_step} a step{bound}){this}")


def given_budget(steps: int, default: Budget) -> Budget:
    """The budget of a run given `steps` explicitly, beside the `default` it replaces (a demo run
    shorter than the default learns from its first line, not only from its closing advice)."""
    if steps == default.steps:
        return Budget(steps, f"{steps} steps (given), the default for this data: {default.reason}", given=True)
    return Budget(steps, f"{steps} steps (given); the default for this data would be {default.reason}", given=True)
