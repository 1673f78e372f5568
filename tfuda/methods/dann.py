"""DANN (Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015;
Ganin et al., JMLR 2016; https://arxiv.org/abs/1409.7495).

A domain discriminator D reads the embedding e = G(x) through a gradient reversal layer R_l
(identity forward, -l * gradient backward), so G learns features D cannot tell apart:

  L = CE(y, C(G(x_s))) + BCE(d, D(R_l(G(x))))     d = 0 for source, 1 for target
  l(p) = 2 / (1 + exp(-10 p)) - 1                   p = step / total steps in [0, 1]
  lr(p) = lr0 / (1 + 10 p)^0.75                     (the paper's annealing; see `AnnealedLR`)

Both schedules are computed from the optimizer's step variable inside the graph.
`monitors/domain_accuracy` near 0.5 means the domains have become indistinguishable.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfuda.methods.schedules import AnnealedLR
from tfuda.methods.base import Logs, Method, cross_entropy
from tfuda.models import embedding_model
from tfuda.models.common import embedding_size_of


@tf.custom_gradient
def reverse_gradient(x: tf.Tensor, scale: tf.Tensor):
    """Identity forward; the gradient is multiplied by -scale backward (none flows to scale)."""

    def grad(dy):
        return -scale * dy, tf.zeros_like(scale)

    return tf.identity(x), grad


def grl_lambda(progress: tf.Tensor) -> tf.Tensor:
    """2 / (1 + exp(-10 p)) - 1: 0 at the start, ~1 at the end."""
    return 2.0 / (1.0 + tf.exp(-10.0 * progress)) - 1.0


class DANN(Method):
    """Domain-adversarial training.

    Args:
      hidden: width of the domain discriminator's hidden layers.
    """

    name = "dann"
    source_views = ("weak",)
    target_views = ("weak",)
    default_uratio = 1

    def __init__(self, hidden: int = 256):
        self.hidden = hidden
        self.features = None
        self.discriminator = None

    def build(self, model: keras.Model) -> None:
        self.features = embedding_model(model)
        width = embedding_size_of(model)
        self.discriminator = keras.Sequential([
            keras.Input((width,)),
            keras.layers.Dense(self.hidden, activation="relu", dtype="float32"),
            keras.layers.Dense(self.hidden, activation="relu", dtype="float32"),
            keras.layers.Dense(1, dtype="float32"),
        ], name="domain_discriminator")

    @property
    def extra_layers(self):
        return [self.discriminator]

    def learning_rate(self, lr: float, total_steps: int):
        return AnnealedLR(lr, total_steps)

    def loss(self, model, batch, progress) -> tuple[tf.Tensor, Logs]:
        src, tgt = batch["source"], batch["target"]
        num_x = tf.shape(src["weak"])[0]
        embedding, logits = self.features(tf.concat([src["weak"], tgt["weak"]], 0), training=True)
        embedding = tf.cast(embedding, tf.float32)
        scale = grl_lambda(progress)
        domain_logits = self.discriminator(reverse_gradient(embedding, scale), training=True)[:, 0]
        domains = tf.concat([tf.zeros([num_x]), tf.ones([tf.shape(tgt["weak"])[0]])], 0)
        loss_domain = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=domains, logits=domain_logits))
        loss_source = tf.reduce_mean(cross_entropy(src["labels"], logits[:num_x]))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.cast(domain_logits > 0, tf.float32), domains), tf.float32))
        return loss_source + loss_domain, {
            "losses/source": loss_source, "losses/domain": loss_domain,
            "monitors/grl_lambda": scale, "monitors/domain_accuracy": accuracy}
