"""Keras Applications backbones for real photographs: `resnet50`, `efficientnetv2-b0`, `mobilenetv3-small`.

Each takes float 0..255 images and does its own input scaling inside the model, so the serving
graph needs nothing else. `weights` is `imagenet` (downloads; needs internet), a path to a
`.weights.h5` file of the backbone (as saved by `backbone.save_weights`), or None (random init).
"""

from __future__ import annotations

import os

import keras

from pipelines.errors import UserError
from tfuda.models.common import classifier, image_input


@keras.saving.register_keras_serializable(package="tfuda")
class CaffeScaling(keras.layers.Layer):
    """ResNet50's 'caffe' input convention: RGB 0..255 -> BGR minus the ImageNet channel means."""

    MEANS = (103.939, 116.779, 123.68)

    def call(self, inputs):
        bgr = keras.ops.flip(inputs, axis=-1)
        return bgr - keras.ops.convert_to_tensor(self.MEANS, dtype=inputs.dtype)


def _resnet50(inputs, weights):
    x = CaffeScaling(name="scale")(inputs)
    return keras.applications.ResNet50(include_top=False, weights=weights, input_tensor=None,
                                       input_shape=tuple(inputs.shape[1:]), pooling="avg"), x


def _efficientnetv2_b0(inputs, weights):
    # include_preprocessing=True: the model takes 0..255 and rescales itself.
    return keras.applications.EfficientNetV2B0(
        include_top=False, weights=weights, input_shape=tuple(inputs.shape[1:]), pooling="avg",
        include_preprocessing=True), inputs


def _mobilenetv3_small(inputs, weights):
    return keras.applications.MobileNetV3Small(
        include_top=False, weights=weights, input_shape=tuple(inputs.shape[1:]), pooling="avg",
        include_preprocessing=True, minimalistic=False), inputs


APPLICATIONS = {
    "resnet50": _resnet50,
    "efficientnetv2-b0": _efficientnetv2_b0,
    "mobilenetv3-small": _mobilenetv3_small,
}


def build_application(name: str, num_classes: int, image_size: int,
                      weights: str | None = None) -> keras.Model:
    """Builds a Keras Applications backbone with a linear head.

    Args:
      name: a key of `APPLICATIONS`.
      num_classes: output classes.
      image_size: input side S (>= 32).
      weights: None, `imagenet`, or a local `.weights.h5` file of the backbone.

    Raises:
      UserError: image too small, or a weights file that is missing or does not fit.
    """
    if image_size < 32:
        raise UserError(f"--model {name} needs --image-size >= 32 (got {image_size})")
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise UserError(f"--weights '{weights}' is not a file: give 'imagenet' or a .weights.h5 path")
    inputs = image_input(image_size)
    backbone, scaled = APPLICATIONS[name](inputs, "imagenet" if weights == "imagenet" else None)
    if weights not in (None, "imagenet"):
        try:
            backbone.load_weights(weights)
        except (ValueError, OSError) as err:
            raise UserError(f"--weights '{weights}' does not fit --model {name}: {err}") from None
    features = backbone(scaled)
    return classifier(inputs, features, num_classes, name.replace("-", "_"))
