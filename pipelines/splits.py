"""Carving labeled subsets for the SSL and SSDA settings: K examples per class, deterministic."""

from __future__ import annotations

import numpy as np

from pipelines.errors import DataError
from pipelines.sources import Source


def per_class_indices(labels: np.ndarray, per_class: int, num_classes: int, seed: int) -> np.ndarray:
    """Sorted indices of `per_class` examples of each class, drawn with `seed`.

    Raises:
      DataError: a class has fewer than `per_class` labeled examples.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise DataError(f"class {label} has {len(members)} labeled examples, fewer than --labeled-per-class {per_class}")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def carve_per_class(source: Source, per_class: int, seed: int, flag: str) -> Source:
    """A labeled subset of `source` with `per_class` examples per class.

    Args:
      source: a labeled source.
      per_class: K.
      seed: fixes which examples are drawn.
      flag: the flag that named `source`, for error messages.
    """
    if not source.info.labeled:
        raise DataError(f"{flag} '{source.info.spec}' has no labels to carve --labeled-per-class from")
    try:
        indices = per_class_indices(source.labels(), per_class, source.info.num_classes, seed)
    except DataError as err:
        raise DataError(f"{flag} '{source.info.spec}': {err}") from None
    return source.subset(indices, f"{source.info.spec}[{per_class}/class]")
