"""`wrn-28-2`: the Wide ResNet of FixMatch and AdaMatch (Zagoruyko & Komodakis 2016), 1.47M params.

As in the official FixMatch/AdaMatch code: pre-activation residual blocks, BN momentum 0.999,
leaky ReLU (0.1), he_normal (fan-out) convolutions, 4 blocks per group at widths 32/64/128
(16 * widen 2 ... 64 * 2), strides 1/2/2, then BN-ReLU and global average pooling.
"""

from __future__ import annotations

import keras

from tfuda.models.common import classifier, image_input

BN_MOMENTUM = 0.999
LEAKY = 0.1


def _conv(filters: int, stride: int, name: str, kernel: int = 3) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=name,
        kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"),
    )


def _bn_act(x, name: str):
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=1e-3, name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(LEAKY, name=f"{name}_act")(x)


def _block(x, filters: int, stride: int, activate_before_residual: bool, name: str):
    pre = _bn_act(x, f"{name}_pre")
    shortcut = pre if activate_before_residual else x
    y = _conv(filters, stride, f"{name}_conv1")(pre)
    y = _bn_act(y, f"{name}_mid")
    y = _conv(filters, 1, f"{name}_conv2")(y)
    if shortcut.shape[-1] != filters:
        shortcut = _conv(filters, stride, f"{name}_proj", kernel=1)(shortcut)
    return keras.layers.Add(name=f"{name}_add")([shortcut, y])


def build_wrn(num_classes: int, image_size: int, depth: int = 28, widen: int = 2) -> keras.Model:
    """WRN-depth-widen. Input float32 `[B, S, S, 3]` (0..255); 128-d embedding for widen 2."""
    blocks = (depth - 4) // 6
    inputs = image_input(image_size)
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    x = _conv(16, 1, "stem")(x)
    for group, (width, stride) in enumerate(((16 * widen, 1), (32 * widen, 2), (64 * widen, 2))):
        for block in range(blocks):
            x = _block(x, width, stride if block == 0 else 1, group == 0 and block == 0,
                       f"g{group}b{block}")
    x = _bn_act(x, "final")
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return classifier(inputs, features, num_classes, f"wrn_{depth}_{widen}")
