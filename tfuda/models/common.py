"""Pieces every model shares: the input, the scaling layer, and the embedding + head ending."""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras

EMBEDDING = "embedding"
LOGITS = "logits"
INPUT = "images"


def image_input(image_size: int) -> keras.KerasTensor:
    """float32 `[batch, S, S, 3]` images with values 0..255."""
    return keras.Input((image_size, image_size, 3), name=INPUT, dtype="float32")


def classifier(inputs: keras.KerasTensor, features: keras.KerasTensor, num_classes: int,
               name: str) -> keras.Model:
    """Ends a backbone: `features` -> named `embedding` -> linear head named `logits` (float32).

    The embedding layer is an identity so every model exposes its penultimate features under
    one name; the head stays float32 under mixed precision for a stable softmax.
    """
    embedding = keras.layers.Identity(name=EMBEDDING)(features)
    logits = keras.layers.Dense(num_classes, name=LOGITS, dtype="float32",
                                kernel_initializer="glorot_normal")(embedding)
    return keras.Model(inputs, logits, name=name)


def leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of `model` that has no sublayers (nested models, e.g. a Keras Applications
    backbone, are entered)."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if not layer._flatten_layers(include_self=False, recursive=False)]


@contextlib.contextmanager
def trainable_flags_kept(model: keras.Model) -> Iterator[None]:
    """Restores the `trainable` flag of `model` and of every layer in it on exit (methods freeze
    layers of their choice while they train)."""
    layers = list(model._flatten_layers(include_self=True, recursive=True))  # parents before children
    flags = [layer.trainable for layer in layers]
    try:
        yield
    finally:
        for layer, flag in zip(layers, flags):
            layer.trainable = flag


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The batch-normalisation layers of `model`, nested ones included."""
    return [layer for layer in leaf_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def num_classes_of(model: keras.Model) -> int:
    """Classes a classifier in tfuda's form outputs (the width of its `logits` layer)."""
    return int(model.get_layer(LOGITS).output.shape[-1])


def embedding_size_of(model: keras.Model) -> int:
    """Width of a classifier's `embedding` (its penultimate features)."""
    return int(model.get_layer(EMBEDDING).output.shape[-1])
