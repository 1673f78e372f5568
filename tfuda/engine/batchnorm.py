"""Batch-norm statistics re-estimated on the target: what a source-free run evaluates and exports.

TENT normalises with the statistics of each target batch while it adapts. The model it saves
normalises with its moving statistics instead, and those trail the target: at a momentum of
0.999 about 74% of the source statistics remain after 300 steps, and the weight EMA averages them
again. `reestimate_batch_norm` replaces them by the target's own (the "precise BN" of Wu &
Johnson 2021, AdaBN of Li et al. 2017): every batch-norm layer's moving mean and variance become
the average of its batch statistics over a fixed target sample, the adapted weights unchanged.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tfuda.models.common import batch_norm_layers

BATCH = 256


def reestimate_batch_norm(model: keras.Model, images: np.ndarray, batch_size: int = BATCH) -> None:
    """Sets each batch-norm layer's moving statistics to the mean of its batch statistics over
    `images` (uint8 `[N, S, S, 3]`), in place. Nothing else changes: the forward passes run in
    training mode with momentum (i - 1) / i on batch i, so the moving values are the running
    mean over the batches; frozen layers are unfrozen for the pass and restored."""
    norms = batch_norm_layers(model)
    saved = [(layer.momentum, layer.trainable) for layer in norms]
    try:
        for index, start in enumerate(range(0, len(images), batch_size)):
            for layer in norms:
                layer.momentum, layer.trainable = index / (index + 1), True
            model(tf.cast(images[start:start + batch_size], tf.float32), training=True)
    finally:
        for layer, (momentum, trainable) in zip(norms, saved):
            layer.momentum, layer.trainable = momentum, trainable


def with_target_statistics(images: np.ndarray) -> Callable[[keras.Model], keras.Model]:
    """model -> a copy of it whose batch-norm statistics are re-estimated on `images`.

    The copy is made on the first call and given the model's weights again on each later one
    (one model object, so the functions that evaluate it are traced once): a returned model is
    valid until the next call, which must pass the same model.
    """
    copy: keras.Model | None = None

    def prepare(model: keras.Model) -> keras.Model:
        nonlocal copy
        if copy is None:
            copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        reestimate_batch_norm(copy, images)
        return copy

    return prepare
