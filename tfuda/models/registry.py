"""Models by `--model` name."""

from __future__ import annotations

import functools
from typing import Callable

import keras

from pipelines.errors import UserError
from tfuda.models.applications import APPLICATIONS, build_application
from tfuda.models.cnn_small import build_cnn_small
from tfuda.models.common import EMBEDDING, LOGITS
from tfuda.models.wrn import build_wrn

MODELS: dict[str, Callable[..., keras.Model]] = {
    "cnn-small": lambda num_classes, image_size, weights=None: build_cnn_small(num_classes, image_size),
    "cnn-small-in": lambda num_classes, image_size, weights=None: build_cnn_small(num_classes, image_size, instance_norm=True),
    "wrn-28-2": lambda num_classes, image_size, weights=None: build_wrn(num_classes, image_size, 28, 2),
    **{name: functools.partial(build_application, name) for name in APPLICATIONS},
}


def build_model(name: str, num_classes: int, image_size: int, weights: str | None = None) -> keras.Model:
    """Builds model `name`: float32 `[B, S, S, 3]` (0..255) -> logits `[B, num_classes]`.

    Raises:
      UserError: unknown name (the message lists the known ones), or `weights` given for a
        model that has no pretrained weights.
    """
    if name not in MODELS:
        raise UserError(f"unknown --model '{name}'; known models: {', '.join(MODELS)}")
    if weights is not None and name not in APPLICATIONS:
        raise UserError(f"--weights applies to {', '.join(APPLICATIONS)}, not to --model {name}")
    return MODELS[name](num_classes, image_size, weights=weights)


def embedding_model(model: keras.Model) -> keras.Model:
    """A model sharing `model`'s layers that returns `(embedding [B, D], logits [B, K])`."""
    return keras.Model(model.input, [model.get_layer(EMBEDDING).output, model.get_layer(LOGITS).output])
