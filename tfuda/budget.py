"""The default training budget, set by the data: a batch for the target's size and passes over it.

A run without `--batch-size` takes `BATCH` labeled images a step (per replica), `LARGE_BATCH`
on a target of `LARGE_TARGET` images or more. A run without `--steps` trains for as many steps as
the default method (AdaMatch, 3 unlabeled images per labeled one) needs for `PASSES` passes over
the target's training images,

    steps = round(PASSES * N_target / (3 * batch)),       batch = the batch x replicas,

held between a floor (`MIN_STEPS`; `LARGE_BATCH_MIN_STEPS` from `LARGE_BATCH` up) and a ceiling
(`MAX_STEPS` at `BATCH`, fewer steps for larger batches: the same number of images). Every method
gets the same batch and steps on the same data (as under the earlier fixed default), so a
source-only baseline trains as long as the adaptation it is compared with; a method with another
`uratio` sees more or fewer target images per step.

Why (docs/benchmarks.md, *Default budget*): on the small built-in targets (585-1,437 images)
AdaMatch at batch 8 was still climbing at 1,200 steps (20-50 passes) and closed more of the gap
at 2,400, so no target trains fewer steps. On the 4,000-image targets 20 passes at batch 8 closed
96-98% of the gap, twice as many steps at batch 8 lost up to 4 points, and batch 32 x 1,500 (the
earlier fixed default) closed 99%: from the size where 20 passes outgrow the floor at batch 8, the
batch grows instead of the steps. The ceiling bounds a CPU run on a large folder (give `--steps`
for more; the run's advice says when its label-free scores were still rising).
"""

from __future__ import annotations

import dataclasses
import functools

PASSES = 20
"""Passes over the unlabeled target images of a run at the default budget."""
UNLABELED_PER_LABELED = 3
"""The default method's unlabeled images per labeled one (AdaMatch's `uratio`)."""
BATCH = 8
"""Labeled images a step (per replica) given no `--batch-size`, on targets under `LARGE_TARGET` images."""
LARGE_BATCH = 32
"""Labeled images a step (per replica) given no `--batch-size`, on targets of `LARGE_TARGET` images or more."""
MIN_STEPS = 2400
"""Floor below `LARGE_BATCH`: targets of up to 2,880 images at batch 8 (20 passes would be fewer steps)
train this long."""
LARGE_TARGET = MIN_STEPS * UNLABELED_PER_LABELED * BATCH // PASSES
"""2,880 images: from here 20 passes at `BATCH` outgrow the floor, and the default batch is `LARGE_BATCH`."""
LARGE_BATCH_MIN_STEPS = 1500
"""Floor from `LARGE_BATCH` up: the earlier fixed default's steps at that batch (36 passes over 4,000 images)."""
MAX_STEPS = 10_000
"""Ceiling at `BATCH`: a large target's default run stays within about 20 minutes on 2 CPU cores with
cnn-small (larger models take longer); a larger batch gets the steps of as many images."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """A run's batch and number of steps and why, as printed in its first line."""

    steps: int
    reason: str
    batch_size: int
    """Labeled images a step per replica (the given `--batch-size` or the data's)."""
    batch_reason: str = ""
    """Why the batch, when the data chose it (no `--batch-size`)."""
    given: bool = False
    """True when `--steps` (or `steps=`) set the steps; `reason` then says what the default would be."""

    def line(self) -> str:
        """The line a run starts with."""
        return (f"budget: {self.batch_reason + '; ' if self.batch_reason else ''}{self.reason}"
                + ("" if self.given else "; --steps sets it"))


def default_batch_size(target_images: int | None) -> int:
    """Labeled images a step (per replica) of a run given no `--batch-size`, on a target of
    `target_images` training images (None: unknown)."""
    return LARGE_BATCH if target_images is not None and target_images >= LARGE_TARGET else BATCH


def step_bounds(batch_size: int) -> tuple[int, int]:
    """`(floor, ceiling)` of the default steps at `batch_size` labeled images a step (all replicas)."""
    return (MIN_STEPS if batch_size < LARGE_BATCH else LARGE_BATCH_MIN_STEPS,
            MAX_STEPS * BATCH // max(batch_size, BATCH))


def default_budget(target_images: int | None, batch_size: int | None = None, uratio: int | None = None,
                   replicas: int = 1) -> Budget:
    """The batch and steps of a run given no `--steps` (nor, with `batch_size` None, `--batch-size`).

    Args:
      target_images: the target's training images (None: unknown, e.g. a streamed dataset of
        unknown size).
      batch_size: labeled images a step per replica; None: the data's (`default_batch_size`).
      uratio: the run's method's unlabeled target images per labeled one (0: it takes none),
        when not the default method's: the steps stay the default method's, the reason says both.
      replicas: the replicas a step's batch is split over (`batch_size` is per replica).
    """
    batch_reason = ""
    if batch_size is None:
        batch_size = default_batch_size(target_images)
        why = "the target's size is unknown" if target_images is None else \
            f"a target of {'at least' if batch_size == LARGE_BATCH else 'under'} {LARGE_TARGET:,} images"
        batch_reason = f"batch {batch_size} ({why}; --batch-size sets it)"
    unlabeled_per_step = UNLABELED_PER_LABELED * batch_size * replicas
    floor, ceiling = step_bounds(batch_size * replicas)
    budget = functools.partial(Budget, batch_size=batch_size, batch_reason=batch_reason)
    if target_images is None:
        return budget(floor, f"{floor} steps (the floor: the target's size is unknown)")
    passes = int(PASSES * target_images / unlabeled_per_step + 0.5)
    steps = min(ceiling, max(floor, passes))
    bound = "" if steps == passes else \
        f", the {'floor' if steps == floor else 'ceiling'} ({passes} steps would be {PASSES} passes)"
    done = steps * unlabeled_per_step / target_images
    if uratio is None or uratio == UNLABELED_PER_LABELED:
        return budget(steps, f"{steps} steps = {done:.0f} passes over the {target_images:,} unlabeled target "
                             f"images at {unlabeled_per_step} a step{bound}")
    seen_per_step = uratio * batch_size * replicas
    this = f"; this method takes {seen_per_step} a step: {steps * seen_per_step / target_images:.0f} passes" \
        if seen_per_step else "; this method takes none"
    return budget(steps, f"{steps} steps, the default method's for this data ({done:.0f} passes over the "
                         f"{target_images:,} unlabeled target images at {unlabeled_per_step} a step{bound}){this}")


def given_budget(steps: int, default: Budget) -> Budget:
    """The budget of a run given `steps` explicitly, beside the `default` it replaces (a demo run
    shorter than the default learns from its first line, not only from its closing advice)."""
    if steps == default.steps:
        reason = f"{steps} steps (given), the default for this data: {default.reason}"
    else:
        reason = f"{steps} steps (given); the default for this data would be {default.reason}"
    return dataclasses.replace(default, steps=steps, reason=reason, given=True)
