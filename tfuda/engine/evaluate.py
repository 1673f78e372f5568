"""Accuracy of a classifier on a labeled source, with the training-time preprocessing."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from pipelines.sources import Source
from tfuda.inference import predict_source


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Top-1 accuracy (fraction), per class, and the confusion matrix (rows: true class)."""

    accuracy: float
    per_class: dict[str, float | None]
    confusion: list[list[int]]


def evaluate(model: keras.Model, source: Source, image_size: int) -> EvalResult:
    """Accuracy of `model` on labeled `source` (class names from `source.info`)."""
    probs, labels = predict_source(model, source, image_size)
    names = source.info.class_names
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((len(names), len(names)), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    totals = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[i, i] / totals[i]) if totals[i] else None) for i, name in enumerate(names)
    }
    return EvalResult(
        accuracy=float((predicted == labels).mean()),
        per_class=per_class,
        confusion=confusion.tolist(),
    )
