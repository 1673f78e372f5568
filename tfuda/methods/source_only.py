"""Source-only: supervised training on the labeled data alone, with weak (or strong) augmentation.

The baseline every adaptation report compares against:
L = E_{(x, y) ~ source}[CE(y, f(weak(x)))]. With labeled *target* data as the source, the same
method trains the "oracle" upper bound. `label_smoothing` eps > 0 trains against labels smoothed
to (1 - eps) one-hot + eps / K, the source recipe of SHOT (Liang et al., ICML 2020, eps = 0.1),
which makes features more transferable for a later source-free adaptation. `augment="strong"`
trains on the strong view (RandAugment + Cutout, as AdaMatch's source loss) instead of the weak
one: a source model that depends less on colour, contrast and texture, often better on a
shifted domain before any adaptation, and the model a source-free method then starts from.
"""

from __future__ import annotations

import tensorflow as tf

from pipelines.errors import UserError
from tfuda.methods.base import Logs, Method, cross_entropy


class SourceOnly(Method):
    """Cross-entropy on augmented labeled images; no target data.

    Args:
      label_smoothing: of the cross-entropy targets (SHOT's source models use 0.1).
      augment: the view trained on: `weak`, or `strong` (RandAugment + Cutout: a model less tied
        to the source's colours and textures).
    """

    name = "source-only"
    target_views = ()

    def __init__(self, label_smoothing: float = 0.0, augment: str = "weak"):
        if not 0.0 <= label_smoothing < 1.0:
            raise UserError(f"--method-arg label_smoothing={label_smoothing}: must be in [0, 1)")
        if augment not in ("weak", "strong"):
            raise UserError(f"--method-arg augment={augment}: give weak or strong")
        self.label_smoothing, self.augment = label_smoothing, augment
        self.source_views = (augment,)

    def loss(self, model, batch, progress) -> tuple[tf.Tensor, Logs]:
        src = batch["source"]
        logits = model(src[self.augment], training=True)
        loss = tf.reduce_mean(cross_entropy(src["labels"], logits, self.label_smoothing))
        return loss, {"losses/source": loss}
