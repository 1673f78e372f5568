"""`cnn-small`: a 6-conv VGG-style network (~0.29M parameters) for quick runs, tests and small images."""

from __future__ import annotations

import keras

from tfuda.models.common import classifier, image_input

WIDTHS = (32, 64, 128)


def build_cnn_small(num_classes: int, image_size: int) -> keras.Model:
    """Two 3x3 conv-BN-ReLU per stage at widths 32/64/128, max-pool between, global average pool.

    Args:
      num_classes: output classes.
      image_size: input side S (>= 8).

    Returns:
      Functional model float32 `[B, S, S, 3]` (0..255) -> logits `[B, num_classes]`, with a
      128-d `embedding` layer.
    """
    inputs = image_input(image_size)
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
