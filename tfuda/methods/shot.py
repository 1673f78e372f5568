"""SHOT (Liang et al., "Do We Really Need to Access the Source Data? Source Hypothesis Transfer for
Unsupervised Domain Adaptation", ICML 2020; https://arxiv.org/abs/2002.08546): adapt a trained
classifier to the target domain from target images alone.

The classifier head C (the source "hypothesis") is frozen; the feature extractor G is trained
so that its target features fit C. With p = softmax(C(G(u))) for the B target images u of a step
(weak view) and p_bar their mean:

  L_ent = (1 / B) * sum_i H(p_i)                     confident predictions
  L_div = H(p_bar) = -sum_k p_bar_k log p_bar_k      diverse predictions (no collapse to a class)
  L_IM  = L_ent - L_div                              information maximisation
  L     = L_IM + beta * CE(y_hat, C(G(u)))           beta = 0.3 (the paper's)

The pseudo-labels y_hat come from weighted k-means in feature space (`shot_centroids`): with
g_hat = normalize([G(x); 1]) over the target set, soft centroids c_k = sum_x p_k(x) g_hat(x) /
sum_x p_k(x), labels by the nearest centroid in cosine distance (classes nobody predicts are left
out), then one round of hard centroids and labels again. The centroids are recomputed every
`interval` steps on up to `max_images` target images (a fixed, seeded sample), batched in graph
mode, and checkpointed with a copy of the weights they were computed with (the *labeller*).
Each step labels its images by their nearest centroid in the labeller's feature space
(inference mode), so an image keeps its label until the next clustering, as in the official
code, which labels every target image once per interval and keeps those labels. Labelling
with the weights being trained instead chases a moving target: the frozen head pulls an
image's features away from its centroid, its label flips, and the run collapses (on
`digits -> digits-m`, from a source model 65% right, beta = 3, lr 0.001: 13% target accuracy
after 300 steps, 43% with the labeller).
"""

from __future__ import annotations


import keras
import tensorflow as tf

from pipelines.errors import UserError
from tfuda.methods.base import Logs, SourceFreeMethod, cross_entropy, pseudo_label_monitors
from tfuda.models import embedding_model
from tfuda.models.common import embedding_size_of, num_classes_of
from tfuda.validate.entropy import entropies
from tfuda.validate.sample import TargetSample

SHOT_EPSILON = 1e-5
"""The official code's epsilon inside the logarithm."""


def information_maximisation(logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`(mean entropy, entropy of the mean prediction)` of softmax(logits), in nats. logits `[B, K]`."""
    p = tf.nn.softmax(tf.cast(logits, tf.float32))
    return tf.reduce_mean(entropies(p, SHOT_EPSILON)), entropies(tf.reduce_mean(p, axis=0), SHOT_EPSILON)


def _augmented(features: tf.Tensor) -> tf.Tensor:
    """normalize([features; 1]) row-wise: SHOT's feature space for clustering. `[N, D]` -> `[N, D+1]`."""
    features = tf.cast(features, tf.float32)
    return tf.math.l2_normalize(tf.concat([features, tf.ones_like(features[:, :1])], axis=1), axis=1)


def nearest_centroid(features: tf.Tensor, centroids: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Index of the nearest valid centroid in cosine distance, per row.

    Args:
      features: float `[N, D]` raw features (augmented here).
      centroids: float `[K, D+1]` in the augmented space.
      valid: bool `[K]`: classes that may be chosen.

    Returns:
      int64 `[N]`.
    """
    similarity = tf.matmul(_augmented(features), tf.math.l2_normalize(centroids, axis=1), transpose_b=True)
    return tf.argmax(tf.where(valid[None, :], similarity, -2.0), axis=1)


def shot_centroids(features: tf.Tensor, probs: tf.Tensor, rounds: int = 1) -> tuple[tf.Tensor, tf.Tensor]:
    """SHOT's weighted k-means: `(centroids [K, D+1], valid [K])` from features `[N, D]`, probs `[N, K]`.

    Soft centroids weighted by `probs`, labels by nearest centroid among the classes that are
    some image's top prediction, then `rounds` rounds of hard centroids.
    """
    points = _augmented(features)
    probs = tf.cast(probs, tf.float32)
    valid = tf.reduce_sum(tf.one_hot(tf.argmax(probs, axis=1), tf.shape(probs)[1]), axis=0) > 0
    centroids = tf.matmul(probs, points, transpose_a=True) / (tf.reduce_sum(probs, axis=0)[:, None] + 1e-8)
    for _ in range(rounds):
        labels = nearest_centroid(features, centroids, valid)
        onehot = tf.one_hot(labels, tf.shape(probs)[1])
        centroids = tf.matmul(onehot, points, transpose_a=True) / (tf.reduce_sum(onehot, axis=0)[:, None] + 1e-8)
    return centroids, valid


class Centroids(keras.layers.Layer):
    """SHOT's centroids as non-trainable weights, so checkpoints keep them: `[K, D+1]` and `valid` `[K]`."""

    def __init__(self, num_classes: int, width: int, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.centroids = self.add_weight(shape=(num_classes, width + 1), initializer="zeros",
                                         trainable=False, name="centroids")
        self.valid = self.add_weight(shape=(num_classes,), initializer="zeros", trainable=False, name="valid")
        self.computed = self.add_weight(shape=(), initializer="zeros", trainable=False, name="computed")


class SHOT(SourceFreeMethod):
    """Source hypothesis transfer.

    Args:
      beta: weight of the cross-entropy with the clustering's pseudo-labels.
      interval: steps between two clusterings of the target sample.
      max_images: target images clustered (a fixed, seeded sample).
      reestimate: evaluate and export with batch-norm statistics re-estimated on the target.
    """

    name = "shot"
    default_lr = 0.01

    def __init__(self, beta: float = 0.3, interval: int = 100, max_images: int = 4096, reestimate: bool = False):
        if beta < 0 or interval < 1 or max_images < 1:
            raise UserError(f"--method shot: beta >= 0, interval >= 1 and max_images >= 1 (got beta={beta}, "
                            f"interval={interval}, max_images={max_images})")
        self.beta, self.interval, self.max_images, self.reestimate = beta, interval, max_images, reestimate

    @property
    def reestimates_batch_norm(self) -> bool:
        return self.reestimate

    def build(self, model: keras.Model) -> None:
        """Freezes the classifier head; the clustering state lives in a `Centroids` layer and a
        frozen copy of the model (the labeller)."""
        head = model.get_layer("logits")
        head.trainable = False
        self.features = embedding_model(model)
        self.labeller = keras.models.clone_model(model)
        self.labeller.trainable = False
        self.labeller_features = embedding_model(self.labeller)
        self.state = Centroids(num_classes_of(model), embedding_size_of(model), name="shot_centroids")

    @property
    def extra_layers(self):
        return [self.state, self.labeller]

    def pseudo_labels(self, images: tf.Tensor) -> tf.Tensor:
        """int64 `[B]`: nearest centroid of the labeller's features (inference mode) of images `[B, S, S, 3]`."""
        embedding, _ = self.labeller_features(images, training=False)
        return nearest_centroid(tf.stop_gradient(embedding), self.state.centroids, self.state.valid > 0.5)

    def loss(self, model, batch, progress) -> tuple[tf.Tensor, Logs]:
        tgt = batch["target"]
        _, logits = self.features(tgt["weak"], training=True)
        entropy, diversity = information_maximisation(logits)
        pseudo_labels = self.pseudo_labels(tgt["weak"])
        loss_pseudo = tf.reduce_mean(cross_entropy(pseudo_labels, logits))
        logs = {"losses/entropy": entropy, "losses/diversity": diversity, "losses/pseudo_label": loss_pseudo}
        if self.monitor_target_labels:
            logs.update(pseudo_label_monitors(tgt["labels"], pseudo_labels, tf.ones_like(pseudo_labels, tf.float32)))
        return entropy - diversity + self.beta * loss_pseudo, logs

    def callbacks(self, classifier, target, spec) -> list[keras.callbacks.Callback]:
        sample = TargetSample(target, min(self.max_images, target.info.num_examples or self.max_images),
                              spec.image_size, spec.seed)
        return [RecomputeCentroids(self, classifier, sample)]

    def recompute(self, classifier: keras.Model, sample: TargetSample) -> None:
        """Clusters the target sample (up to `max_images` images, seeded) with the current model,
        which becomes the labeller."""
        self.labeller.set_weights(classifier.get_weights())
        probs, features = sample.outputs(self.labeller)
        centroids, valid = shot_centroids(tf.constant(features), tf.constant(probs))
        self.state.centroids.assign(centroids)
        self.state.valid.assign(tf.cast(valid, tf.float32))
        self.state.computed.assign(1.0)


class RecomputeCentroids(keras.callbacks.Callback):
    """Before step 0, every `interval` steps, and after a resume without saved centroids."""

    def __init__(self, method: SHOT, classifier: keras.Model, sample: TargetSample):
        super().__init__()
        self.method, self.classifier, self.sample = method, classifier, sample

    def on_train_batch_begin(self, batch, logs=None):
        if batch % self.method.interval == 0 or float(self.method.state.computed.numpy()) == 0.0:
            self.method.recompute(self.classifier, self.sample)
