"""AdaMatch (Berthelot et al., "AdaMatch: A Unified Approach to Semi-Supervised Learning and
Domain Adaptation", ICLR 2022; https://arxiv.org/abs/2106.04732), as in google-research/adamatch.

Per step, with labeled source views x_w, x_s (B each) and unlabeled target views u_w, u_s (U each):

1. Random logit interpolation. z' = f([x; u]) in training mode (batch norm sees both domains);
   z'' = f(x) in training mode on the source alone, its batch-norm statistic updates discarded.
   z_x = lambda * z'_x + (1 - lambda) * z''_x with lambda ~ U(0, 1) element-wise.
2. Distribution alignment. p_x = softmax(z_x,w), p_u = softmax(z'_u,w);
   p~_u = normalize(p_u * m_x / m_u) (per class, rows renormalised to 1), where m_x, m_u are
   the current batch's means E[p_x], E[p_u] (`alignment=batch`, the default, chosen on the
   built-in suite: README "Built-in suite of shifts") or, as in the official code
   (`alignment=running`), an exponential moving average (decay 0.999) of the batch means E[p_x]
   and the mean of the last 128 batch means E[p_u], both starting from uniform
   (`AlignmentStatistics`, checkpointed). `alignment=prior` (not in the paper) aligns to the
   target's own class prior instead of the source's: m_x is replaced by a running EM estimate
   of the target prior (`tfuda.methods.target_prior`), for targets whose class proportions
   differ from the source's (label shift). With `realign` = F > 0 (not in the paper), from progress
   1 - F on (`first_step_at`) m_x is the target prior that the EMA model of that step estimates by EM on
   the unlabeled target sample, frozen (`FrozenPrior`): the adapted model's estimate, which is
   close to the truth where the source-trained model's and the online one are not
   (docs/methods/adamatch.md).
3. Relative confidence threshold. c_tau = tau * E[max_k p_x]; mask = max_k p~_u >= c_tau;
   hard pseudo-labels y^_u = argmax_k p~_u (no gradient through 2-3).
4. Loss. L_source = (CE(y, z_x,w) + CE(y, z_x,s)) / 2; L_target = E[mask * CE(y^_u, z'_u,s)];
   L = L_source + mu(t) * L_target with mu(t) = lambda_u * (0.5 - cos(min(pi, 2 pi t / T)) / 2).
   With `entropy` = w > 0 (not in the paper), L += w mu(t) / lambda_u * E[H(softmax(z'_u,w))] (the
   same warm-up; gradients flow through the weak target view's logits): the
   conditional entropy of the target predictions, the cluster-assumption term of VADA (Shu et
   al., "A DIRT-T Approach to Unsupervised Domain Adaptation", ICLR 2018). With `vat` = v > 0
   (not in the paper), L += v mu(t) / lambda_u * L_vat(u_w): VADA's virtual adversarial
   training on the weak target view (`tfuda.methods.vat`, radius `vat_eps`), its forward passes
   keeping the batch-norm statistics (as the source-only pass of step 1). With `vmt` = m > 0 (not in
   the paper), L += m mu(t) / lambda_u * L_vmt(u_w): virtual mixup training (Mao et al. 2019,
   `tfuda.methods.vmt`) on the weak target view, its passes likewise.
5. Refinement (`refine` = R, 0.25 by default, 0 turns it off; not in the paper; DIRT-T's
   refinement, Shu et al. 2018, and Noisy Student, Xie et al. 2020, in AdaMatch's terms; chosen on
   the built-in suite: docs/benchmarks.md): from progress 1 - R on, the step trains on the target
   alone. The EMA model (the teacher, inference mode) labels the weak view: p_t,
   aligned to the frozen prior with `realign` (p_t * pi / E[p_t], renormalised), else as it is;
   L = E[1{max p_t >= tau} CE(argmax p_t, z_u,s)] (+ the `entropy`, `vat` and `vmt` terms), the
   teacher following the model by its EMA. With `refine_align` (not in DIRT-T) p_t is aligned
   to the source's mean prediction tracked over the adaptation stage (step 2's m_x, a running
   mean, decay 0.99): p_t * m_x / E[p_t], renormalised (with `realign`, to the frozen prior once
   estimated). The source views are not made then, unless
   `refine_source` = s > 0 (not in DIRT-T): L += s L_source on the source views (step 4's
   L_source without the interpolation of step 1), so the labeled source keeps anchoring the classes.
   With `refine_teacher=frozen` the teacher is the EMA model of the stage's first step, kept
   fixed through the stage (one Noisy Student iteration; DIRT-T replaces its teacher only every
   few thousand steps) instead of following the model. With `refine_shifted` (not in DIRT-T) the
   stage runs only on a target whose class proportions differ from the source's: when it would
   begin, the EMA model estimates the target prior pi by EM on the target sample (as `realign`
   does); if ||pi - m_x||_1 exceeds the 2 (1 - a) its own errors can explain (a its confidence
   under pi) plus the distance sampling alone puts between the two estimates (pi from n target
   images, m_x a running mean over about 200 B source images: `sampling_spread`,
   `tfuda.validate.estimate.toward_source`), the stage runs with its teacher labels aligned to
   pi; otherwise AdaMatch's steps 1-4 go on to the end.

Optimiser (SGD with plain momentum 0.9 as in the official code, lr 0.03 with cosine decay, weight
decay) and the warmed-up EMA of the weights live in the shared trainer (`tfuda.engine`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from pipelines.augment import unit_uniform
from pipelines.errors import UserError
from pipelines.feeds import ViewPhases, first_step_at
from tfuda.methods.base import Logs, Method, cross_entropy, pseudo_label_monitors, warmup
from tfuda.methods.target_prior import EstimatePrior, FrozenPrior, TargetPrior
from tfuda.methods.vat import virtual_adversarial_loss
from tfuda.methods.vmt import virtual_mixup_loss
from tfuda.models.common import batch_norm_layers, num_classes_of
from tfuda.validate.entropy import entropies
from tfuda.validate.estimate import prior_distance
from tfuda.validate.sample import TargetSample


def align_distribution(p_target: tf.Tensor, source_mean: tf.Tensor, target_mean: tf.Tensor,
                       eps: float = 1e-6) -> tf.Tensor:
    """Scales target probabilities per class by source_mean / target_mean, rows renormalised.

    Args:
      p_target: float `[U, K]` target class probabilities.
      source_mean, target_mean: float `[K]` class distributions of the source and target
        predictions (batch means, or `AlignmentStatistics`' running ones).

    Returns:
      float `[U, K]` rows summing to 1.
    """
    aligned = p_target * (source_mean + eps) / (target_mean + eps)
    return aligned / tf.reduce_sum(aligned, axis=1, keepdims=True)


def labeled_loss(labels: tf.Tensor, logits_weak: tf.Tensor, logits_strong: tf.Tensor) -> tf.Tensor:
    """Step 4's L_source: the mean cross-entropy of int `[B]` labels on the weak and the strong
    views' float32 `[B, K]` logits, averaged."""
    return 0.5 * (tf.reduce_mean(cross_entropy(labels, logits_weak))
                  + tf.reduce_mean(cross_entropy(labels, logits_strong)))


class AlignmentStatistics(keras.layers.Layer):
    """AdaMatch's running class distributions, as in the official code: an exponential moving
    average of the source batches' mean prediction and a moving window over the target batches'
    mean predictions, both starting from uniform.

    Args:
      num_classes: K.
      decay: EMA decay of the source mean (official: 0.999).
      window: how many target batch means are averaged (official: 128).

    Non-trainable float32 weights, checkpointed with the run. Under a distribution strategy
    each replica's update is averaged over the replicas (`aggregation="mean"`), like the
    official code's per-device statistics, averaged after each step.
    """

    def __init__(self, num_classes: int, decay: float = 0.999, window: int = 128, **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32"})
        self.num_classes, self.decay, self.window = num_classes, decay, window
        uniform = keras.initializers.Constant(1.0 / num_classes)
        self.source_mean = self.add_weight(shape=(num_classes,), initializer=uniform, trainable=False,
                                           aggregation="mean", name="source_mean")
        self.target_means = self.add_weight(shape=(window, num_classes), initializer=uniform, trainable=False,
                                            aggregation="mean", name="target_means")

    def update(self, source_batch_mean: tf.Tensor, target_batch_mean: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Adds one step's batch means (float `[K]` each); returns the updated `(m_x, m_u)` `[K]`."""
        source = self.decay * self.source_mean + (1.0 - self.decay) * source_batch_mean
        targets = tf.concat([self.target_means[1:], target_batch_mean[None]], 0)
        self.source_mean.assign(source)
        self.target_means.assign(targets)
        return source, tf.reduce_mean(targets, 0)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "decay": self.decay, "window": self.window}


def relative_threshold(p_source: tf.Tensor, tau: float) -> tf.Tensor:
    """tau x the mean over the source batch of its top-1 probability. p_source: `[B, K]`."""
    return tau * tf.reduce_mean(tf.reduce_max(p_source, axis=1))


def interpolate_logits(joint: tf.Tensor, source_only: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """lambda * joint + (1 - lambda) * source_only, lambda ~ U(0, 1) per element (stateless; the
    same numbers with and without XLA)."""
    lam = tf.cast(unit_uniform(tf.shape(joint), seed), joint.dtype)
    return lam * joint + (1.0 - lam) * source_only


def batch_norm_statistics(model: keras.Model) -> list:
    """The moving means and variances of every batch-norm layer of `model` (nested ones included)."""
    return [variable for layer in batch_norm_layers(model) for variable in (layer.moving_mean, layer.moving_variance)]


def source_only_logits(model: keras.Model, images: tf.Tensor) -> tf.Tensor:
    """`model(images, training=True)` whose batch-norm statistic updates are discarded.

    The batch-norm moving statistics are read before the call and written back after it, as
    the official code does; gradients flow as in any call. Only those are restored: other
    non-trainable state (the seed of a dropout layer) advances, so the next call draws new
    masks. (Keras' `stateless_call` would avoid the writes, but under `MirroredStrategy` it
    loses some gradients on all but the first replica.)
    """
    statistics = batch_norm_statistics(model)
    saved = [tf.identity(v.value) for v in statistics]
    logits = model(images, training=True)
    for variable, value in zip(statistics, saved):
        variable.assign(value)
    return logits


ALIGNMENTS = ("running", "batch", "prior")
"""`alignment` choices: the official running statistics, the current batch's means, or the target
prior estimated online."""

TEACHERS = ("ema", "frozen")
"""`refine_teacher` choices: the EMA model as it follows the model, or as it was when the stage began."""


class FreezeTeacher(keras.callbacks.Callback):
    """Copies the EMA model's weights into `teacher` before the first step of the run's last
    `fraction` (`first_step_at(1 - fraction, T)` of `self.model`, the `TrainingModel`). A run resumed
    after that step restores the teacher from its checkpoint."""

    def __init__(self, teacher: keras.Model, fraction: float):
        super().__init__()
        self.teacher, self.fraction = teacher, fraction

    def on_train_begin(self, logs=None):
        self.start = first_step_at(1.0 - self.fraction, self.model.total_steps)

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.start:
            for frozen, average in zip(self.teacher.weights, self.model.ema.average.weights):
                frozen.assign(average)


class AdaMatch(Method):
    """AdaMatch for UDA, SSL and SSDA.

    Args:
      tau: relative confidence threshold: a target pseudo-label counts when its confidence is at
        least tau x the mean top-1 confidence on the source batch.
      lambda_u: weight of the target loss (warmed up over the first half of the run).
      alignment: distribution alignment of the target predictions: `batch` (the current batch's
        mean source and target predictions), `running` (the official code's running statistics) or
        `prior` (the target batch's mean to the running EM estimate of the target's class prior;
        it collapsed on the suite: docs/methods/adamatch.md).
      entropy: weight of the conditional entropy of the target predictions (0: off), warmed up
        like the target loss (it hurt the long-tailed target on the suite).
      realign: fraction F of the run, at its end, whose alignment targets the target class prior
        estimated by the EMA model when it begins (0: off; with `batch` or `running` alignment).
      realign_images: target images the prior is estimated on (a fixed, seeded sample).
      vat: weight of virtual adversarial training on the weak target view (0: off), warmed up
        like the target loss.
      vat_eps: its radius, L2 per image on the [0, 1] pixel scale.
      vmt: weight of virtual mixup training on the weak target view (0: off; `tfuda.methods.vmt`),
        warmed up like the target loss.
      refine: fraction R of the run, at its end, that is a refinement stage on the target alone
        (0: off): the EMA model's confident labels of the weak view (>= tau), learned on the
        strong view. Off by default under `--setting ssl` / `ssda` (`run_defaults`); given there, the
        stage trains on the unlabeled data.
      refine_source: weight of the labeled source loss kept in the refinement stage (0: the
        target alone).
      refine_align: align the teacher's labels in the refinement stage to the source's mean
        prediction (as step 2 aligns) instead of taking them as they are.
      refine_teacher: the refinement stage's teacher: `ema` (the EMA model, following the
        model) or `frozen` (the EMA model of the stage's first step).
      refine_shifted: run the refinement stage only if the target's class proportions, estimated
        when it would begin, differ from the source's by more than the model's errors explain
        (its teacher labels then aligned to them); else AdaMatch goes on.
    """

    name = "adamatch"
    source_views = ("weak", "strong")
    target_views = ("weak", "strong")
    default_uratio = 3
    default_momentum = "plain"  # the official code's (objax Momentum); measured on the suite, see README

    def __init__(self, tau: float = 0.9, lambda_u: float = 1.0, alignment: str = "batch", entropy: float = 0.0,
                 realign: float = 0.0, realign_images: int = 4096, vat: float = 0.0, vat_eps: float = 3.5,
                 vmt: float = 0.0, refine: float = 0.25, refine_source: float = 0.0,
                 refine_align: bool = False, refine_teacher: str = "ema", refine_shifted: bool = False):
        if alignment not in ALIGNMENTS:
            raise UserError(f"--method-arg alignment={alignment}: choose {', '.join(ALIGNMENTS)}")
        if not 0.0 <= realign < 1.0 or realign_images < 1:
            raise UserError(f"--method-arg realign={realign}, realign_images={realign_images}: realign is a fraction "
                            "of the run in [0, 1) and realign_images >= 1")
        if not 0.0 <= refine < 1.0:
            raise UserError(f"--method-arg refine={refine}: a fraction of the run in [0, 1)")
        if refine_source < 0 or (refine_source and not refine):
            raise UserError(f"--method-arg refine_source={refine_source}: a weight >= 0, with refine > 0")
        if refine_align and not refine:
            raise UserError("--method-arg refine_align: applies to the refinement stage; set refine > 0")
        if refine_teacher not in TEACHERS or (refine_teacher != "ema" and not refine):
            raise UserError(f"--method-arg refine_teacher={refine_teacher}: choose {', '.join(TEACHERS)}, "
                            "with refine > 0")
        if refine_shifted and (not refine or realign or refine_align):
            raise UserError("--method-arg refine_shifted: estimates the target prior when the refinement stage would "
                            "begin; set refine > 0, without realign or refine_align")
        if vat < 0 or vat_eps <= 0:
            raise UserError(f"--method-arg vat={vat}, vat_eps={vat_eps}: vat >= 0 and vat_eps > 0")
        if vmt < 0:
            raise UserError(f"--method-arg vmt={vmt}: a weight >= 0")
        if realign and alignment == "prior":
            raise UserError("--method-arg realign: aligns to an estimated prior already with alignment=prior; "
                            "use alignment=batch or running")
        self.tau = tau
        self.lambda_u = lambda_u
        self.alignment = alignment
        self.entropy = entropy
        self.realign, self.realign_images = realign, realign_images
        self.vat, self.vat_eps = vat, vat_eps
        self.vmt = vmt
        self.refine, self.refine_source, self.refine_align = refine, refine_source, refine_align
        self.refine_teacher, self.refine_shifted = refine_teacher, refine_shifted
        self.statistics: AlignmentStatistics | TargetPrior | None = None
        self.frozen_prior: FrozenPrior | None = None
        self.teacher: keras.Model | None = None

    def build(self, model: keras.Model) -> None:
        if self.alignment == "running":
            self.statistics = AlignmentStatistics(num_classes_of(model), name="alignment_statistics")
        elif self.alignment == "prior":
            self.statistics = TargetPrior(num_classes_of(model), name="target_prior")
        if self.realign or self.refine_align or self.refine_shifted:  # refine_align: never estimated
            self.frozen_prior = FrozenPrior(num_classes_of(model), name="frozen_prior")
        if self.refine_teacher == "frozen":
            self.teacher = keras.models.clone_model(self.average)
            self.teacher.set_weights(self.average.get_weights())
            self.teacher.trainable = False

    @classmethod
    def run_defaults(cls, config) -> dict[str, float]:
        """The refinement stage is on by default in domain adaptation (`uda`, the only setting of
        `tfuda.adapt`), where it was chosen, and off under `--setting ssl` or `ssda` unless
        `refine` is given."""
        return {} if config.setting == "uda" else {"refine": 0.0}

    @property
    def extra_layers(self):
        return [layer for layer in (self.statistics, self.frozen_prior, self.teacher) if layer is not None]

    def view_phases(self, total_steps: int) -> ViewPhases | None:
        """With `refine`, the source views are made only before the refinement stage (always when
        the stage may not run: `refine_shifted`)."""
        if not self.refine or self.refine_source or self.refine_shifted:
            return None
        return ViewPhases(1.0 - self.refine, total_steps, early=(("source", "weak"), ("source", "strong")))

    def callbacks(self, classifier, target, spec) -> list[keras.callbacks.Callback]:
        callbacks = [] if self.teacher is None else [FreezeTeacher(self.teacher, self.refine)]
        if not self.realign and not self.refine_shifted:
            return callbacks
        sample = TargetSample(target, min(self.realign_images, target.info.num_examples or self.realign_images),
                              spec.image_size, spec.seed)
        return [*callbacks, EstimatePrior(self.frozen_prior, sample, self.estimated_after, spec.global_batch_size)]

    @property
    def estimated_after(self) -> float:
        """The frozen prior is estimated when the run's last fraction `realign` (else `refine`) begins."""
        return self.realign or self.refine

    def report(self, total_steps: int) -> list[str]:
        """What the run did beyond AdaMatch's steps 1-4: the refinement stage's steps; once the frozen
        prior is estimated, how far it moved from the source's proportions and what `realign` or
        `refine_shifted` did with it."""
        lines = []
        prior = self.frozen_prior
        if prior is not None and float(prior.estimated.numpy()) > 0.5:
            step = first_step_at(1.0 - self.estimated_after, total_steps)
            distance = prior_distance(prior.target_prior.numpy(), prior.source_prior.numpy())
            moved = f"the target's class proportions estimated at step {step} are L1 {distance:.3f} from the source's"
            if self.realign:
                lines.append(f"realign: {moved}; the run aligned to them from there on")
            elif float(prior.shifted.numpy()) > 0.5:
                lines.append(f"refinement stage: ran from step {step}: {moved}, farther than the model's errors and "
                             "sampling explain (a label shift)")
            else:
                lines.append(f"refinement stage: not run: {moved}, within what the model's errors and sampling "
                             "explain (no label shift seen; without refine_shifted every target is refined)")
        if self.refine and not self.refine_shifted:
            trained = "the target alone, labeled" if not self.refine_source else \
                f"the target and the labeled source (weight {self.refine_source:g}), the target labeled"
            lines.append(f"refinement stage: steps {first_step_at(1.0 - self.refine, total_steps)}-{total_steps} on "
                         f"{trained} by the EMA model (--method-arg refine=0 turns it off)")
        return lines

    def class_distributions(self, p_source: tf.Tensor, p_target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`(m_x, m_u)` `[K]` of step 2 from this step's `[B, K]` / `[U, K]` predictions (m_x: the
        estimated target prior for `alignment=prior`)."""
        source_mean, target_mean = tf.reduce_mean(p_source, 0), tf.reduce_mean(p_target, 0)
        if self.statistics is None:
            return source_mean, target_mean
        if isinstance(self.statistics, TargetPrior):
            return self.statistics.update(source_mean, p_target), target_mean
        return self.statistics.update(source_mean, target_mean)

    def realigned(self, source_mean: tf.Tensor) -> tf.Tensor:
        """m_x `[K]` of step 2: `source_mean`, or the frozen target prior once it is estimated
        (`realign`); until then the source's mean prediction is tracked as the prior the EM
        estimate starts from."""
        if self.frozen_prior is None:
            return source_mean
        self.frozen_prior.track(source_mean)
        if not self.realign:
            return source_mean
        return tf.where(self.frozen_prior.estimated > 0.5, self.frozen_prior.target_prior, source_mean)

    def loss(self, model, batch, progress) -> tuple[tf.Tensor, Logs]:
        if not self.refine:
            return self.adaptation_loss(model, batch, progress)
        refining = progress >= 1.0 - self.refine
        if self.refine_shifted:
            refining = refining & (self.frozen_prior.shifted > 0.5)
        loss, logs = tf.cond(refining, lambda: self.refinement_loss(model, batch, progress),
                             lambda: self.adaptation_loss(model, batch, progress))
        return loss, {**logs, "monitors/refining": tf.cast(refining, tf.float32)}

    def adaptation_loss(self, model, batch, progress) -> tuple[tf.Tensor, Logs]:
        """Steps 1-4: AdaMatch's loss."""
        src, tgt = batch["source"], batch["target"]
        x = tf.concat([src["weak"], src["strong"]], 0)
        u = tf.concat([tgt["weak"], tgt["strong"]], 0)
        num_x = tf.shape(x)[0]
        logits = tf.cast(model(tf.concat([x, u], 0), training=True), tf.float32)
        logits_x, logits_u = logits[:num_x], logits[num_x:]
        logits_x_alone = tf.cast(source_only_logits(model, x), tf.float32)
        logits_x = interpolate_logits(
            logits_x, logits_x_alone, tf.random.experimental.stateless_fold_in(batch["seed"], 2))
        logits_x_weak, logits_x_strong = tf.split(logits_x, 2)
        logits_u_weak, logits_u_strong = tf.split(logits_u, 2)

        p_x = tf.nn.softmax(tf.stop_gradient(logits_x_weak))
        p_u_raw = tf.nn.softmax(tf.stop_gradient(logits_u_weak))
        source_mean, target_mean = self.class_distributions(p_x, p_u_raw)
        p_u = align_distribution(p_u_raw, self.realigned(source_mean), target_mean)
        threshold = relative_threshold(p_x, self.tau)
        pseudo_labels = tf.argmax(p_u, axis=1)
        mask = tf.cast(tf.reduce_max(p_u, axis=1) >= threshold, tf.float32)

        loss_source = labeled_loss(src["labels"], logits_x_weak, logits_x_strong)
        loss_target = tf.reduce_mean(cross_entropy(pseudo_labels, logits_u_strong) * mask)
        return self.total_loss(model, batch, progress, loss_source, loss_target, self.lambda_u * warmup(progress),
                               threshold, logits_u_weak, pseudo_labels, mask)

    def refinement_loss(self, model, batch, progress) -> tuple[tf.Tensor, Logs]:
        """Step 5: the target labelled by the EMA model (`average`, set by the trainer), with the
        labeled source only under `refine_source`."""
        src, tgt = batch["source"], batch["target"]
        u = tf.concat([tgt["weak"], tgt["strong"]], 0)
        loss_source = tf.constant(0.0)
        if self.refine_source:
            x = tf.concat([src["weak"], src["strong"]], 0)
            logits = tf.cast(model(tf.concat([x, u], 0), training=True), tf.float32)
            logits_x, logits_u = logits[:tf.shape(x)[0]], logits[tf.shape(x)[0]:]
            loss_source = self.refine_source * labeled_loss(src["labels"], *tf.split(logits_x, 2))
        else:
            logits_u = tf.cast(model(u, training=True), tf.float32)
        logits_u_weak, logits_u_strong = tf.split(logits_u, 2)
        teacher = self.average if self.teacher is None else self.teacher
        p_t = tf.nn.softmax(tf.stop_gradient(tf.cast(teacher(tgt["weak"], training=False), tf.float32)))
        if self.frozen_prior is not None:
            estimated = self.frozen_prior.estimated > 0.5  # (`realign` < `refine` estimates later)
            goal = tf.where(estimated, self.frozen_prior.target_prior, self.frozen_prior.source_prior)
            aligned = align_distribution(p_t, goal, tf.reduce_mean(p_t, 0))
            p_t = aligned if self.refine_align else tf.where(estimated, aligned, p_t)
        pseudo_labels = tf.argmax(p_t, axis=1)
        mask = tf.cast(tf.reduce_max(p_t, axis=1) >= self.tau, tf.float32)
        loss_target = tf.reduce_mean(cross_entropy(pseudo_labels, logits_u_strong) * mask)
        return self.total_loss(model, batch, progress, loss_source, loss_target,
                               tf.constant(self.lambda_u, tf.float32), tf.constant(self.tau, tf.float32),
                               logits_u_weak, pseudo_labels, mask)

    def total_loss(self, model, batch, progress, loss_source: tf.Tensor, loss_target: tf.Tensor,
                   target_weight: tf.Tensor, threshold: tf.Tensor, logits_u_weak: tf.Tensor,
                   pseudo_labels: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, Logs]:
        """`loss_source + target_weight * loss_target` + the regularisers, and the logs both stages
        share (the pseudo-labels `[U]` int64 and their float32 `mask` `[U]` monitored)."""
        logs = {
            "losses/source": loss_source,
            "losses/target": loss_target,
            "monitors/mask_rate": tf.reduce_mean(mask),
            "monitors/threshold": threshold,
            "monitors/target_weight": target_weight,
        }
        loss = loss_source + target_weight * loss_target + self.regularisers(model, batch, logits_u_weak, progress, logs)
        if self.monitor_target_labels:
            logs.update(pseudo_label_monitors(batch["target"]["labels"], pseudo_labels, mask))
        return loss, logs

    def regularisers(self, model, batch, logits_u_weak: tf.Tensor, progress, logs: Logs) -> tf.Tensor:
        """The `entropy`, `vat` and `vmt` terms on the weak target view (logits `[U, K]`), warmed
        up; logs them into `logs`. Returns their weighted sum (0 when all are off)."""
        total = tf.constant(0.0)
        if self.entropy:
            loss_entropy = tf.reduce_mean(entropies(tf.nn.softmax(logits_u_weak)))
            total += self.entropy * warmup(progress) * loss_entropy
            logs["losses/entropy"] = loss_entropy
        if self.vat:
            loss_vat = virtual_adversarial_loss(
                lambda images: source_only_logits(model, images), batch["target"]["weak"],
                tf.random.experimental.stateless_fold_in(batch["seed"], 3), self.vat_eps)
            total += self.vat * warmup(progress) * loss_vat
            logs["losses/vat"] = loss_vat
        if self.vmt:
            loss_vmt = virtual_mixup_loss(lambda images: source_only_logits(model, images), batch["target"]["weak"],
                                          tf.random.experimental.stateless_fold_in(batch["seed"], 4))
            total += self.vmt * warmup(progress) * loss_vmt
            logs["losses/vmt"] = loss_vmt
        return total
