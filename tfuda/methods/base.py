"""What every method is: a loss over one feed batch, plus the views and batch shape it needs."""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import keras
import tensorflow as tf

from pipelines.errors import UserError
from pipelines.feeds import FeedSpec, ViewPhases
from pipelines.sources import Source
from tfuda.methods.schedules import CosineDecayTo

Logs = dict[str, tf.Tensor]


def cross_entropy(labels: tf.Tensor, logits: tf.Tensor, smoothing: float = 0.0) -> tf.Tensor:
    """Per-example sparse softmax cross-entropy in float32. labels int `[N]`, logits `[N, K]`.

    `smoothing` eps: against the label smoothed to (1 - eps) one-hot + eps / K, i.e.
    (1 - eps) * CE(y) + eps * mean_k(-log p_k).
    """
    logits = tf.cast(logits, tf.float32)
    if not smoothing:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    log_p = tf.nn.log_softmax(logits)
    return -(1.0 - smoothing) * tf.gather(log_p, labels, batch_dims=1) - smoothing * tf.reduce_mean(log_p, axis=1)


def warmup(progress: tf.Tensor) -> tf.Tensor:
    """Cosine ramp 0 -> 1 over the first half of training, then 1: 0.5 - cos(min(pi, 2 pi p)) / 2."""
    return 0.5 - tf.cos(tf.minimum(math.pi, 2.0 * math.pi * progress)) / 2.0


def pseudo_label_monitors(labels: tf.Tensor, pseudo_labels: tf.Tensor, mask: tf.Tensor) -> Logs:
    """Accuracy of pseudo-labels against monitoring-only target labels (-1 = unknown, ignored).

    Returns `monitors/pseudo_label_acc` (all known) and `monitors/masked_pseudo_label_acc`
    (known and above threshold); 0 when none qualify.
    """
    known = tf.cast(labels >= 0, tf.float32)
    correct = tf.cast(tf.equal(pseudo_labels, labels), tf.float32) * known
    return {
        "monitors/pseudo_label_acc": tf.math.divide_no_nan(tf.reduce_sum(correct), tf.reduce_sum(known)),
        "monitors/masked_pseudo_label_acc": tf.math.divide_no_nan(
            tf.reduce_sum(correct * mask), tf.reduce_sum(known * mask)),
    }


class Method:
    """A training method. Subclasses set the class attributes and implement `loss`.

    Class attributes:
      name: `--method` value.
      source_views, target_views: views of each part the feed must provide (`Augment.views`);
        no source views make a source-free method (it adapts an `--init` model from target
        images alone). An instance may choose its own views of the same parts (source-only's
        `augment`); the feed reads them from the instance.
      default_uratio: unlabeled target images per labeled source image (per `--batch-size`
        for a source-free method), when `--uratio` is unset.
      default_lr: peak learning rate when `--lr` is unset.
      default_momentum: `--momentum` when unset: `nesterov` or `plain` (SGD momentum 0.9).

    Hyper-parameters are the keyword arguments of `__init__`, with their defaults and type
    annotations, kept as attributes of the same names; `--method-arg NAME=VALUE` sets them
    (`for_run`). Names listed in `derived_args` are computed from the run's config instead.

    `monitor_target_labels` is set by the trainer when the target data carries labels; a method
    may then log monitors computed from them (they never enter a loss).

    `average` is set by the trainer before `build`: the EMA of the model's weights (the model a
    run evaluates and exports), for a method whose loss reads it as a teacher (inference only).

    A method may own extra layers (e.g. a domain discriminator): create them in `build` and
    list them in `extra_layers`; they are trained and checkpointed with the model. Work between
    steps (e.g. SHOT's centroids) goes in Keras callbacks returned by `callbacks`.
    """

    name: ClassVar[str]
    source_views: ClassVar[tuple[str, ...]] = ("weak",)
    target_views: ClassVar[tuple[str, ...]] = ()
    default_uratio: ClassVar[int] = 1
    default_lr: ClassVar[float] = 0.03
    default_momentum: ClassVar[str] = "nesterov"
    derived_args: ClassVar[tuple[str, ...]] = ()
    monitor_target_labels: bool = False
    average: keras.Model | None = None

    @classmethod
    def source_free(cls) -> bool:
        return not cls.source_views

    @classmethod
    def init_parameters(cls) -> dict[str, inspect.Parameter]:
        """Every constructor argument: name -> `inspect.Parameter` (default and annotation)."""
        if cls.__init__ is object.__init__:
            return {}
        return {name: p for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}

    @classmethod
    def hyperparameters(cls) -> dict[str, inspect.Parameter]:
        """The settable hyper-parameters: `init_parameters` less `derived_args`."""
        return {name: p for name, p in cls.init_parameters().items() if name not in cls.derived_args}

    @classmethod
    def parse_args(cls, values: dict[str, Any], derived: bool = False) -> dict[str, Any]:
        """Checks `--method-arg` values against `hyperparameters` (and `derived_args` when
        `derived`), converting strings by type.

        Raises:
          UserError: an unknown name or a value of the wrong type (the message lists the names).
        """
        known = cls.init_parameters() if derived else cls.hyperparameters()
        parsed = {}
        for name, value in values.items():
            if name not in known:
                raise UserError(f"--method-arg {name}: --method {cls.name} has no such hyper-parameter; it has "
                                f"{', '.join(f'{k}={p.default}' for k, p in known.items()) or 'none'}")
            kind = type(known[name].default)
            try:
                if kind is bool and isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0"):
                        raise ValueError(value)
                    parsed[name] = value.lower() in ("true", "1")
                else:
                    parsed[name] = kind(value)
            except (TypeError, ValueError):
                raise UserError(f"--method-arg {name}={value}: expected a {kind.__name__} "
                                f"(default {known[name].default})") from None
        return parsed

    @classmethod
    def fill_defaults(cls, config) -> None:
        """Sets a `tfuda.config.Config`'s unset `lr` and `momentum` to this method's defaults."""
        config.lr = cls.default_lr if config.lr is None else config.lr
        config.momentum = config.momentum or cls.default_momentum

    @classmethod
    def run_defaults(cls, config) -> dict[str, Any]:
        """Constructor arguments a run's `tfuda.config.Config` sets where `method_args` does not
        (default: none; e.g. a default that depends on the run's setting or steps)."""
        return {}

    @classmethod
    def for_run(cls, config) -> "Method":
        """The method with the hyper-parameters of a run's `tfuda.config.Config`: `method_args`
        over `run_defaults`."""
        return cls(**{**cls.run_defaults(config), **cls.parse_args(config.method_args)})

    def hyperparameter_values(self) -> dict[str, Any]:
        """Every settable hyper-parameter's value, defaults included: a run's `method_args`."""
        return {name: getattr(self, name) for name in self.hyperparameters()}

    def run_values(self, steps: int | None) -> dict[str, Any]:
        """The run `Config` fields that make `for_run` rebuild this method (inverse of `for_run`) in
        a run of `steps` (None: not set yet)."""
        return {"method": self.name, "method_args": self.hyperparameter_values()}

    def get_config(self) -> dict[str, Any]:
        """Every constructor argument by name (Keras' `get_config`; `from_config` inverts it)."""
        return {name: getattr(self, name) for name in self.init_parameters()}

    @classmethod
    def from_config(cls, values: dict[str, Any]) -> "Method":
        """The method with these hyper-parameters, strings converted by type (`parse_args`)."""
        return cls(**cls.parse_args(values, derived=True))

    def report(self, total_steps: int) -> list[str]:
        """Lines on what the method decided during a run of `total_steps` (default: none), printed
        at the run's end and recorded in `metrics.json` (`method_report`)."""
        return []

    def callbacks(self, classifier: keras.Model, target: Source | None,
                  spec: FeedSpec) -> list[keras.callbacks.Callback]:
        """Callbacks the training loop runs with this method (default: none).

        Args:
          classifier: the model being trained.
          target: the target `Source` (or None).
          spec: the run's `FeedSpec`.
        """
        return []

    def build(self, model: keras.Model) -> None:
        """Creates method-owned layers for `model` (default: none)."""

    @property
    def extra_layers(self) -> list[keras.layers.Layer]:
        return []

    def loss(self, model: keras.Model, batch: dict, progress: tf.Tensor) -> tuple[tf.Tensor, Logs]:
        """The training loss of one feed batch.

        Args:
          model: the classifier being trained (images float32 0..255 -> logits).
          batch: a feed element with views (see `pipelines.feeds`).
          progress: float32 scalar, step / total steps, in [0, 1].

        Returns:
          `(loss, logs)`: the scalar loss (without weight decay, which the trainer adds) and
          named scalars, `losses/...` and `monitors/...`, that the loop logs.
        """
        raise NotImplementedError

    def ema_start(self, total_steps: int) -> int:
        """Step from which the EMA of the weights averages (before it, it copies the model)."""
        return 0

    @property
    def reestimates_batch_norm(self) -> bool:
        """Whether the run evaluates and saves its model with batch-norm statistics re-estimated on
        the target (`tfuda.engine.batchnorm`; default False)."""
        return False

    def view_phases(self, total_steps: int) -> ViewPhases | None:
        """Views only one phase of the method uses (`pipelines.feeds.ViewPhases`; default None:
        the loss uses every view at every step)."""
        return None

    def learning_rate(self, lr: float, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
        """The method's learning-rate schedule (default: AdaMatch/FixMatch cosine decay to lr/4)."""
        return CosineDecayTo(lr, total_steps)


class SourceFreeMethod(Method):
    """A method that adapts an `--init` model from unlabeled target images alone (weak view,
    `uratio` x `--batch-size` of them per step): no source views, so the feed has no source."""

    source_views: ClassVar[tuple[str, ...]] = ()
    target_views: ClassVar[tuple[str, ...]] = ("weak",)
    default_uratio: ClassVar[int] = 2
