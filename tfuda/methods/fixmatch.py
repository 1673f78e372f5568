"""FixMatch (Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with Consistency and
Confidence", NeurIPS 2020; https://arxiv.org/abs/2001.07685).

With labeled weak views x_w (B) and unlabeled weak/strong views u_w, u_s (U = uratio x B), one
joint forward pass over [x_w; u_w; u_s]:

  q = softmax(f(u_w) / T)                  (no gradient; T = temperature)
  mask = max_k q >= tau                     (fixed threshold, 0.95)
  L = CE(y, f(x_w)) + lambda_u * E[mask * CE(argmax_k q, f(u_s))]

Optimiser (SGD Nesterov 0.9, cosine decay, weight decay) and the EMA of the weights are the
shared trainer's, as in the paper. The default unlabeled ratio is the paper's 7.
"""

from __future__ import annotations

import tensorflow as tf

from tfuda.methods.base import Logs, Method, cross_entropy, pseudo_label_monitors


def fixed_threshold_mask(probs: tf.Tensor, tau: float) -> tf.Tensor:
    """1.0 where the top-1 probability is >= tau, else 0.0. probs: `[U, K]` -> `[U]`."""
    return tf.cast(tf.reduce_max(probs, axis=1) >= tau, tf.float32)


class FixMatch(Method):
    """FixMatch.

    Args:
      tau: fixed confidence threshold of a pseudo-label from the weak view.
      lambda_u: weight of the unlabeled loss.
      temperature: of the softmax that makes the pseudo-labels' confidences.
    """

    name = "fixmatch"
    source_views = ("weak",)
    target_views = ("weak", "strong")
    default_uratio = 7

    def __init__(self, tau: float = 0.95, lambda_u: float = 1.0, temperature: float = 1.0):
        self.tau, self.lambda_u, self.temperature = tau, lambda_u, temperature

    def loss(self, model, batch, progress) -> tuple[tf.Tensor, Logs]:
        src, tgt = batch["source"], batch["target"]
        num_x = tf.shape(src["weak"])[0]
        logits = tf.cast(model(tf.concat([src["weak"], tgt["weak"], tgt["strong"]], 0), training=True), tf.float32)
        logits_x = logits[:num_x]
        logits_u_weak, logits_u_strong = tf.split(logits[num_x:], 2)
        probs = tf.nn.softmax(tf.stop_gradient(logits_u_weak) / self.temperature)
        mask = fixed_threshold_mask(probs, self.tau)
        pseudo_labels = tf.argmax(probs, axis=1)
        loss_source = tf.reduce_mean(cross_entropy(src["labels"], logits_x))
        loss_target = tf.reduce_mean(cross_entropy(pseudo_labels, logits_u_strong) * mask)
        logs = {"losses/source": loss_source, "losses/target": loss_target,
                "monitors/mask_rate": tf.reduce_mean(mask)}
        if self.monitor_target_labels:
            logs.update(pseudo_label_monitors(tgt["labels"], pseudo_labels, mask))
        return loss_source + self.lambda_u * loss_target, logs
