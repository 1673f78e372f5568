"""Inference with a trained classifier: one compiled probabilities function per model, shared by
evaluation, prediction and the export's verification."""

from __future__ import annotations

import weakref
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from pipelines.feeds import preprocessed_batches
from pipelines.sources import Source
from tfuda.models import embedding_model

EVAL_BATCH = 256

_INFER: "weakref.WeakKeyDictionary[keras.Model, tf.types.experimental.GenericFunction]" = (
    weakref.WeakKeyDictionary())


def probabilities_fn(model: keras.Model):
    """A `tf.function` (traced once per model): uint8 `[B, S, S, 3]` -> float32 probabilities."""
    if model not in _INFER:
        _INFER[model] = tf.function(
            lambda x: tf.nn.softmax(tf.cast(model(tf.cast(x, tf.float32), training=False), tf.float32)),
            input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.uint8)])
    return _INFER[model]


_FEATURES: "weakref.WeakKeyDictionary[keras.Model, tf.types.experimental.GenericFunction]" = (
    weakref.WeakKeyDictionary())


def features_fn(model: keras.Model):
    """A `tf.function` (traced once per model): uint8 `[B, S, S, 3]` -> `(penultimate features
    float32 [B, D], probabilities float32 [B, K])`, in inference mode. The model needs the
    `embedding` and `logits` layers of `tfuda.models`."""
    if model not in _FEATURES:
        features_model = embedding_model(model)

        def features(x):
            embedding, logits = features_model(tf.cast(x, tf.float32), training=False)
            return tf.cast(embedding, tf.float32), tf.nn.softmax(tf.cast(logits, tf.float32))

        _FEATURES[model] = tf.function(features, input_signature=[
            tf.TensorSpec([None, *model.input_shape[1:]], tf.uint8)])
    return _FEATURES[model]


def predict_batches(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                    batch_size: int = EVAL_BATCH) -> np.ndarray:
    """`predict` (uint8 `[b, S, S, 3]` -> `[b, K]`) over `images` `[N, S, S, 3]` in batches of
    `batch_size`: float32 `[N, K]`."""
    return np.concatenate([np.asarray(predict(images[start:start + batch_size]), np.float32)
                           for start in range(0, len(images), batch_size)])


def predict_source(model: keras.Model, source: Source, image_size: int,
                   batch_size: int = EVAL_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities `[N, K]` float32 and labels `[N]` int64 of `source`, in source order.

    A source whose preprocessed images fit in memory is preprocessed once and kept
    (`Source.preprocessed`): a run evaluates the same sets at every evaluation."""
    infer = probabilities_fn(model)
    in_memory = source.preprocessed(image_size)
    if in_memory is not None:
        images, labels = in_memory.arrays()
        return predict_batches(lambda x: infer(x).numpy(), images, batch_size), labels
    probs, labels = [], []
    for images, batch_labels in preprocessed_batches(source, batch_size, image_size).prefetch(2):
        probs.append(infer(images).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(probs), np.concatenate(labels)
