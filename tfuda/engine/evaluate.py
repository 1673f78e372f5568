"""Accuracy of a classifier on a labeled source, with the training-time preprocessing."""

from __future__ import annotations

import dataclasses
import weakref

import keras
import numpy as np
import tensorflow as tf

from pipelines.feeds import preprocessed_batches
from pipelines.sources import Source

EVAL_BATCH = 256


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Top-1 accuracy (fraction), per class, and the confusion matrix (rows: true class)."""

    accuracy: float
    per_class: dict[str, float | None]
    confusion: list[list[int]]
    num_examples: int


_INFER: "weakref.WeakKeyDictionary[keras.Model, tf.types.experimental.GenericFunction]" = (
    weakref.WeakKeyDictionary())


def probabilities_fn(model: keras.Model):
    """A `tf.function` (traced once per model): uint8 `[B, S, S, 3]` -> float32 probabilities."""
    if model not in _INFER:
        _INFER[model] = tf.function(
            lambda x: tf.nn.softmax(tf.cast(model(tf.cast(x, tf.float32), training=False), tf.float32)),
            input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.uint8)])
    return _INFER[model]


def predict(model: keras.Model, source: Source, image_size: int,
            batch_size: int = EVAL_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities `[N, K]` float32 and labels `[N]` int64 of `source`, in source order."""
    infer = probabilities_fn(model)
    probs, labels = [], []
    for images, batch_labels in preprocessed_batches(source, batch_size, image_size).prefetch(2):
        probs.append(infer(images).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(probs), np.concatenate(labels)


def evaluate(model: keras.Model, source: Source, image_size: int) -> EvalResult:
    """Accuracy of `model` on labeled `source` (class names from `source.info`)."""
    probs, labels = predict(model, source, image_size)
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
        num_examples=int(len(labels)),
    )
