"""Contrastive pretraining, then fine-tuning (SimCLR: Chen et al., "A Simple Framework for
Contrastive Learning of Visual Representations", ICML 2020; https://arxiv.org/abs/2002.05709).

Phase 1 (the first `pretrain_steps`): the encoder G and a projection head h learn from source and
target images together, without labels. Each image x gives two strong views; with
z = normalize(h(G(view))) for the 2N views of a batch, NT-Xent pulls the two views of an image
together and pushes the other 2N - 2 away:

  l(i, j) = -log( exp(z_i . z_j / T) / sum_{k != i} exp(z_i . z_k / T) ),
  L_contrastive = mean over the 2N ordered positive pairs (i, j).

Phase 2 (the remaining `finetune_steps`): cross-entropy on the weakly augmented labeled images,
the whole network trained. The phase switch is a `tf.cond` on the step variable, and the EMA of
the weights (what is evaluated and exported) starts afresh with phase 2.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from pipelines.feeds import ViewPhases
from tfuda.methods.base import Logs, Method, cross_entropy
from tfuda.models import embedding_model
from tfuda.models.common import embedding_size_of


def nt_xent(z1: tf.Tensor, z2: tf.Tensor, temperature: float) -> tf.Tensor:
    """NT-Xent of paired projections. z1, z2: float `[N, D]` (row i of each: views of image i)."""
    z = tf.math.l2_normalize(tf.concat([z1, z2], 0), axis=1)
    n = tf.shape(z1)[0]
    similarity = tf.matmul(z, z, transpose_b=True) / temperature
    similarity -= 1e9 * tf.eye(2 * n)  # an image's view is not its own negative
    positives = tf.concat([tf.range(n, 2 * n), tf.range(n)], 0)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=similarity))


class Contrastive(Method):
    """SimCLR pretraining on source + target, then supervised fine-tuning.

    Args:
      pretrain_fraction: pretraining steps / all steps (set from `--pretrain-steps` and
        `--finetune-steps`, not a `--method-arg`).
      temperature: of NT-Xent.
      projection: output width of the projection head.
    """

    name = "contrastive"
    source_views = ("weak", "strong", "strong2")
    target_views = ("strong", "strong2")
    default_uratio = 1

    def __init__(self, pretrain_fraction: float = 0.5, temperature: float = 0.2, projection: int = 64):
        self.pretrain_fraction, self.temperature, self.projection = pretrain_fraction, temperature, projection
        self.features = None
        self.head = None

    derived_args = ("pretrain_fraction",)

    @classmethod
    def run_defaults(cls, config) -> dict[str, float]:
        """`pretrain_fraction` from the run's steps; none before its steps are set from the data
        (`Config.set_budget`): the default fraction."""
        return {} if config.steps is None else {"pretrain_fraction": config.pretrain_steps / config.steps}

    def run_values(self, steps: int | None) -> dict:
        values = super().run_values(steps)
        return values if steps is None else {**values, "pretrain_steps": max(1, round(self.pretrain_fraction * steps))}

    def build(self, model: keras.Model) -> None:
        self.features = embedding_model(model)
        width = embedding_size_of(model)
        self.head = keras.Sequential([
            keras.Input((width,)),
            keras.layers.Dense(width, activation="relu", dtype="float32"),
            keras.layers.Dense(self.projection, dtype="float32"),
        ], name="projection_head")

    @property
    def extra_layers(self):
        return [self.head]

    def view_phases(self, total_steps: int) -> ViewPhases:
        """Pretraining uses the four strong views, fine-tuning the weak source view only."""
        strong = tuple((part, view) for part in ("source", "target") for view in ("strong", "strong2"))
        return ViewPhases(self.pretrain_fraction, total_steps, early=strong, late=(("source", "weak"),))

    def ema_start(self, total_steps: int) -> int:
        """The EMA restarts at fine-tuning: pretraining weights (untrained head) must not linger in it."""
        return int(round(self.pretrain_fraction * total_steps))

    def loss(self, model, batch, progress) -> tuple[tf.Tensor, Logs]:
        src, tgt = batch["source"], batch["target"]

        def pretrain():
            first = tf.concat([src["strong"], tgt["strong"]], 0)
            second = tf.concat([src["strong2"], tgt["strong2"]], 0)
            embedding, _ = self.features(tf.concat([first, second], 0), training=True)
            z1, z2 = tf.split(self.head(tf.cast(embedding, tf.float32), training=True), 2)
            loss = nt_xent(z1, z2, self.temperature)
            return loss, {"losses/contrastive": loss, "losses/source": tf.constant(0.0), "monitors/phase": tf.constant(0.0)}

        def finetune():
            loss = tf.reduce_mean(cross_entropy(src["labels"], model(src["weak"], training=True)))
            return loss, {"losses/contrastive": tf.constant(0.0), "losses/source": loss, "monitors/phase": tf.constant(1.0)}

        return tf.cond(progress < self.pretrain_fraction, pretrain, finetune)
