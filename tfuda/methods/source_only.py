"""Source-only: supervised training on the labeled data alone, with weak augmentation.

The baseline every adaptation report compares against:
L = E_{(x, y) ~ source}[CE(y, f(weak(x)))]. With labeled *target* data as the source, the same
method trains the "oracle" upper bound. `label_smoothing` eps > 0 trains against labels smoothed
to (1 - eps) one-hot + eps / K, the source recipe of SHOT (Liang et al., ICML 2020, eps = 0.1),
which makes features more transferable for a later source-free adaptation.
"""

from __future__ import annotations

import tensorflow as tf

from pipelines.errors import UserError
from tfuda.methods.base import Logs, Method, cross_entropy


class SourceOnly(Method):
    """Cross-entropy on weakly augmented labeled images; no target data. Hyper-parameter:
    label_smoothing (0; SHOT's source models use 0.1)."""

    name = "source-only"
    source_views = ("weak",)
    target_views = ()

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing < 1.0:
            raise UserError(f"--method-arg label_smoothing={label_smoothing}: must be in [0, 1)")
        self.label_smoothing = label_smoothing

    def loss(self, model, batch, progress) -> tuple[tf.Tensor, Logs]:
        src = batch["source"]
        logits = model(src["weak"], training=True)
        loss = tf.reduce_mean(cross_entropy(src["labels"], logits, self.label_smoothing))
        return loss, {"losses/source": loss}
