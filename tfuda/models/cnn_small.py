"""`cnn-small`: a 6-conv VGG-style network (~0.29M parameters) for quick runs, tests and small images;
`cnn-small-in` the same behind an instance-normalised input (as DIRT-T's digit models, Shu et al.,
ICLR 2018), which removes each image's colour cast, brightness and contrast."""

from __future__ import annotations

import keras

from tfuda.models.common import classifier, image_input

WIDTHS = (32, 64, 128)


@keras.saving.register_keras_serializable(package="tfuda")
class InstanceStandardization(keras.layers.Layer):
    """Per image and channel: (x - mean) / max(std, epsilon) over the pixels, no parameters.

    Args:
      epsilon: the smallest std divided by, in input units (1.0 of 0..255: a flat channel stays ~0).
    """

    def __init__(self, epsilon: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        mean = keras.ops.mean(inputs, axis=(1, 2), keepdims=True)
        std = keras.ops.sqrt(keras.ops.mean(keras.ops.square(inputs - mean), axis=(1, 2), keepdims=True))
        return (inputs - mean) / keras.ops.maximum(std, self.epsilon)

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


def build_cnn_small(num_classes: int, image_size: int, instance_norm: bool = False) -> keras.Model:
    """Two 3x3 conv-BN-ReLU per stage at widths 32/64/128, max-pool between, global average pool.

    Args:
      num_classes: output classes.
      image_size: input side S (>= 8).
      instance_norm: `InstanceStandardization` at the input instead of a fixed 0..255 -> -1..1.

    Returns:
      Functional model float32 `[B, S, S, 3]` (0..255) -> logits `[B, num_classes]`, with a
      128-d `embedding` layer.
    """
    inputs = image_input(image_size)
    if instance_norm:
        x = InstanceStandardization(name="scale")(inputs)
    else:
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    for stage, width in enumerate(WIDTHS):
        if stage:
            x = keras.layers.MaxPooling2D(name=f"pool{stage}")(x)
        for conv in range(2):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                    kernel_initializer="he_normal", name=f"conv{stage}_{conv}")(x)
            x = keras.layers.BatchNormalization(momentum=0.99, name=f"bn{stage}_{conv}")(x)
            x = keras.layers.ReLU(name=f"relu{stage}_{conv}")(x)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return classifier(inputs, features, num_classes, "cnn_small")
