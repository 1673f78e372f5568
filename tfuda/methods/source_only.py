"""Source-only: supervised training on the labeled data alone, with weak augmentation.

The baseline every adaptation report compares against:
L = E_{(x, y) ~ source}[CE(y, f(weak(x)))]. With labeled *target* data as the source, the same
method trains the "oracle" upper bound.
"""

from __future__ import annotations

import tensorflow as tf

from tfuda.methods.base import Logs, Method, cross_entropy


class SourceOnly(Method):
    """Cross-entropy on weakly augmented labeled images; no target data."""

    name = "source-only"
    source_views = ("weak",)
    target_views = ()

    def loss(self, model, batch, progress) -> tuple[tf.Tensor, Logs]:
        src = batch["source"]
        logits = model(src["weak"], training=True)
        loss = tf.reduce_mean(cross_entropy(src["labels"], logits))
        return loss, {"losses/source": loss}
