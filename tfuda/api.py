"""The Python API's training and evaluation calls: `tfuda.adapt` and `tfuda.evaluate` on your own model and data.

    import tfuda
    result = tfuda.adapt(model, source_ds, target_ds, method=tfuda.AdaMatch(tau=0.9),
                         class_names=["cat", "dog"], steps=1000)
    result.model  # the adapted (EMA) classifier, images float32 0..255 -> logits

It runs the command line's training (`tfuda.engine.run.fit`): the same feed, train step,
checkpoints, label-free validators, collapse alarm and `metrics.json`, so a run made here
reads like one made by `python -m tfuda.train`.
"""

from __future__ import annotations

import dataclasses
import io
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import keras
import tensorflow as tf

from pipelines.errors import DataError, UserError
from pipelines.feeds import make_feed
from pipelines.run_data import RunData, TrainingData
from pipelines.sources import Source, open_source
from pipelines.user_data import from_dataset
from tfuda.atomic import write_json_atomic
from tfuda.config import Config, check_resumable
from tfuda.engine.evaluate import EvalResult
from tfuda.engine.evaluate import evaluate as evaluate_source
from tfuda.methods import METHODS, Method, method_class
from tfuda.models.common import num_classes_of, trainable_flags_kept
from tfuda.models.foreign import as_classifier
from tfuda.rundir import RunDir

TRAINING_OPTIONS = ("steps", "batch_size", "uratio", "lr", "weight_decay", "ema_decay", "momentum", "seed", "flip",
                    "xla", "augment_on", "checkpoint_every", "eval_every", "validation_size", "on_collapse", "select")
"""The `Config` fields `adapt` takes as keyword options (see `python -m tfuda.train --help`)."""

MODEL_CLASSES = "the model's classes"
"""How errors name the class names `adapt` checks every labeled data set against."""

Data = Source | tf.data.Dataset | str | None
"""A data argument: an opened `Source`, a `tf.data.Dataset` (see `pipelines.from_dataset`), or
a spec string (`pipelines.open_source`)."""


@dataclasses.dataclass(frozen=True)
class AdaptResult:
    """What `adapt` returns.

    Attributes:
      model: the adapted classifier (the EMA weights, or the `select`ed evaluation's), images
        float32 `[B, S, S, 3]` 0..255 -> logits `[B, K]`.
      class_names: the classes, in output order.
      metrics: the run's `metrics.json` (status, accuracies where labels exist, validators,
        collapse alarms, evaluation history, config).
      run_dir: the run directory, or None when `adapt` used a temporary one.
    """

    model: keras.Model
    class_names: list[str]
    metrics: dict
    run_dir: Path | None

    @property
    def target_accuracy(self) -> float | None:
        """Accuracy on the labeled target evaluation set (None without one)."""
        return self.metrics.get("target_accuracy")

    @property
    def validators(self) -> dict[str, float]:
        """The label-free validator scores of `model` on the unlabeled target."""
        return self.metrics.get("validators", {})

    @property
    def alarms(self) -> list[dict]:
        """Collapse alarms raised during training (`step`, `message`)."""
        return self.metrics.get("alarms", [])

    @property
    def estimated_target_prior(self) -> list[float] | None:
        """The target's class proportions `[K]` estimated without labels (EM; None without target data)."""
        return self.metrics.get("estimated_target_prior")

    @property
    def estimated_target_accuracy(self) -> float | None:
        """The target accuracy estimated without target labels (`tfuda.validate.estimate`; None
        without labeled source data and a held-out source set)."""
        return (self.metrics.get("estimated_target_accuracy") or {}).get("value")

    @property
    def advice(self) -> list[str]:
        """What the run's evaluations suggest (still rising: more steps; worse than its start)."""
        return self.metrics.get("advice", [])


def api_message(text: str) -> str:
    """A command-line error message worded for Python callers: `--batch-size` -> `batch_size`."""
    return re.sub(r"--([a-z][a-z0-9-]*)", lambda m: m.group(1).replace("-", "_"), text)


def _method(method: str | Method) -> Method:
    if isinstance(method, Method):
        return method
    if isinstance(method, str):
        return method_class(method)()
    raise UserError(f"method: give a method name ({', '.join(METHODS)}) or a method object such as "
                    f"tfuda.AdaMatch(tau=0.9), got {type(method).__name__}")


def as_source(data: Data, argument: str, class_names: Sequence[str] | None = None) -> Source | None:
    """`data` as an opened `Source` (None stays None); errors start with `argument`."""
    if data is None or isinstance(data, Source):
        return data
    if isinstance(data, tf.data.Dataset):
        return from_dataset(data, class_names, name=argument, argument=argument)
    if isinstance(data, str):
        try:
            return open_source(data)
        except DataError as err:
            raise DataError(f"{argument}: {err}") from None
    raise DataError(f"{argument}: give a tf.data.Dataset, a pipelines.Source or a spec string, "
                    f"got {type(data).__name__}")


def _open_data(given: dict[str, Data], class_names: Sequence[str] | None, outputs: int,
               method: Method) -> TrainingData:
    """Opens and checks `adapt`'s data arguments (by name) as `TrainingData`, through
    `pipelines.run_data.RunData` as the command line does.

    The class names are `class_names`, else those of the first labeled spec or Source, else
    `"0"`..`"K-1"` for the model's `outputs`; datasets are opened with them. Evaluation sets
    default to the held-out split of a target/source spec that has one (`digits-m` ->
    `digits-m:test`).
    """
    opened = {name: None if isinstance(value, tf.data.Dataset) else as_source(value, name)
              for name, value in given.items()}
    names = tuple(class_names or next((s.info.class_names for s in opened.values() if s and s.info.labeled), None)
                  or [str(k) for k in range(outputs)])
    for name, value in given.items():
        if isinstance(value, tf.data.Dataset):
            opened[name] = as_source(value, name, names)
    if outputs != len(names):
        raise UserError(f"model: outputs {outputs} classes but there are {len(names)} class names: give a model "
                        f"whose last layer has {len(names)} units (or the class_names of its outputs)")
    if method.source_free():
        opened["source"] = None
    _check_parts(method, opened["source"], opened["target"])
    present = {name: source for name, source in opened.items() if source is not None}
    config = {name: source.info.spec for name, source in present.items()}
    try:
        return RunData(config, names, MODEL_CLASSES, opened=present).open_all(needs_target=bool(method.target_views))
    except UserError as err:
        raise type(err)(api_message(str(err))) from None


def _check_parts(method: Method, source: Source | None, target: Source | None) -> None:
    """Raises DataError unless `method` has what it trains on: a labeled source, a target."""
    if not method.source_free() and (source is None or not source.info.labeled):
        raise DataError(f"source: method {method.name} trains on labeled source images: give a labeled source "
                        "((image, label) elements and class_names)")
    if method.target_views and target is None:
        raise DataError(f"target: method {method.name} needs the unlabeled target images")


KERAS_NAMES = {"learning_rate": "lr", "jit_compile": "xla"}
"""Keras' names `adapt` also takes for its options (`jit_compile`: True, False or "auto")."""


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options with Keras' names translated (`learning_rate` -> `lr`, `jit_compile=True` ->
    `xla="on"`); raises UserError for an unknown one or one given under both names."""
    options = dict(options)
    for keras_name, name in KERAS_NAMES.items():
        if keras_name in options:
            if name in options:
                raise UserError(f"adapt: give {name} or {keras_name}, not both")
            value = options.pop(keras_name)
            options[name] = {True: "on", False: "off"}.get(value, value) if name == "xla" else value
    unknown = sorted(set(options) - set(TRAINING_OPTIONS))
    if unknown:
        raise UserError(f"adapt: unknown option(s) {', '.join(unknown)}; options are "
                        f"{', '.join(TRAINING_OPTIONS)} (or Keras' {', '.join(KERAS_NAMES)})")
    return options


def _run_config(method: Method, data: TrainingData, image_size: int, model_name: str,
                options: dict[str, Any]) -> Config:
    """The run's `Config`: `options` and `method`'s values, the data's specs recorded; checked."""
    spec = lambda s: None if s is None else s.info.spec  # noqa: E731
    values = {**options, **method.run_values(options.get("steps"))}
    config = Config(source=spec(data.source), target=spec(data.target), eval_target=spec(data.eval_target),
                    eval_source=spec(data.eval_source), model=f"keras:{model_name}", image_size=image_size,
                    no_report=True, **values)
    try:
        config.validate()
    except UserError as err:
        raise UserError(api_message(str(err))) from None
    method.fill_defaults(config)
    return config


def _run_dir(run_dir: str | Path | None, resume: bool) -> tuple[RunDir, bool]:
    """`(run directory, whether it is temporary)`; refuses to clobber a run or to resume nothing."""
    if run_dir is None:
        if resume:
            raise UserError("adapt: resume=True needs the run_dir of the run to continue")
        return RunDir(tempfile.mkdtemp(prefix="tfuda-adapt-")), True
    run = RunDir(run_dir)
    if resume and not run.checkpoints.is_dir():
        raise UserError(f"adapt: run_dir '{run.path}' has no checkpoints to resume from")
    if not resume and run.path.exists() and (not run.path.is_dir() or any(run.path.iterdir())):
        raise UserError(f"adapt: run_dir '{run.path}' exists and is not empty: choose a new directory, or pass "
                        "resume=True to continue that run")
    return run, False


RESUME_CHECKED = ("method", "source", "target", "eval_target", "eval_source", "image_size")
"""Besides the given options, what `adapt(resume=True)` compares with the saved run (the model's
weights are matched by the checkpoint restore)."""


def _check_resume(run: RunDir, config: Config, options: dict[str, Any]) -> None:
    """Refuses a resume that would train another run than the saved one: the command line's rule
    (`tfuda.config.check_resumable`, `tfuda.engine.run.keep_method_args`), worded for Python."""
    from tfuda.engine.run import keep_method_args

    saved = run.config()
    values = config.to_dict()
    try:
        check_resumable(saved, {k: values[k] for k in (*RESUME_CHECKED, *options)})
        keep_method_args(config, saved.get("method_args") or {})
    except UserError as err:
        raise UserError(api_message(str(err)).replace("resume continues", "resume=True continues", 1)) from None


def adapt(model: keras.Model | tuple[keras.layers.Layer, keras.layers.Layer], source: Data = None,
          target: Data = None, *, method: str | Method = "adamatch", class_names: Sequence[str] | None = None,
          embedding: str | None = None, image_size: int | None = None, eval_target: Data = None,
          eval_source: Data = None, run_dir: str | Path | None = None, resume: bool = False,
          callbacks: Sequence[keras.callbacks.Callback] = (), verbose: bool = True,
          **options: Any) -> AdaptResult:
    """Adapts `model` from the labeled `source` to the unlabeled `target` with `method`.

    Args:
      model: a Keras classifier, images float32 `[B, S, S, 3]` (0..255) -> logits or
        probabilities; or a `(backbone, head)` pair (see `tfuda.as_classifier`). Its layers are
        trained in place; `result.model` is the adapted copy to evaluate and export.
      source: labeled source images (`None` for the source-free methods `shot` and `tent`).
      target: unlabeled target images (labels, if present, are never trained on).
      method: a method object (`tfuda.AdaMatch(tau=0.9)`, ...) or name (`"adamatch"`).
      class_names: class names in label order for datasets (default: a spec's or Source's own,
        else `"0"`..`"K-1"` for the model's K outputs).
      embedding: the layer whose output is the embedding (default: the input of the last Dense).
      image_size: S, for a model that has no input shape yet.
      eval_target: labeled target evaluation set; accuracy on it is reported only (default: the
        held-out split of a `target` spec that has one).
      eval_source: labeled source evaluation set, likewise.
      run_dir: where checkpoints, TensorBoard logs, `metrics.json` and `model.keras` go
        (default: a temporary directory, removed at the end).
      resume: continue the run in `run_dir` from its last checkpoint, with the same method,
        hyper-parameters, data and options (only `steps` and the options of
        `tfuda.config.Config.RESUMABLE` may change; anything else is a UserError).
      callbacks: Keras callbacks, called as `Model.fit` calls them with each evaluation
        interval (`eval_every` steps) as an epoch: step logs (`loss`, `losses/...`,
        `monitors/...`), and at each epoch's end their means and `val_target_accuracy`,
        `val_source_accuracy`, `val_<validator>`. `TensorBoard`, `CSVLogger`, `ModelCheckpoint`
        (it saves the EMA classifier) and `EarlyStopping(monitor="val_bnm", mode="max")` work
        at their defaults.
      verbose: print the progress lines.
      **options: training settings, as the command-line flags: `steps` and `batch_size`
        (default: set by the target's size, `tfuda.budget`; printed first), `lr`, `seed`, ...
        (`TRAINING_OPTIONS`); Keras' `learning_rate` and `jit_compile` are taken too.

    Returns:
      an `AdaptResult`.

    Raises:
      UserError (a ValueError): before training, for a model whose output size does not match
        the classes, data of the wrong structure, a model without an identifiable embedding,
        an unknown option or a bad value.
      tfuda.engine.loop.NonFiniteLoss, Collapsed: training failed (see `on_collapse`).
    """
    from tfuda.budget import given_budget
    from tfuda.engine.run import data_budget, fit

    options = _check_options(options)
    method = _method(method)
    classifier = as_classifier(model, embedding, image_size=image_size)
    data = _open_data({"source": source, "target": target, "eval_target": eval_target, "eval_source": eval_source},
                      class_names, num_classes_of(classifier), method)
    config = _run_config(method, data, int(classifier.input_shape[1]), classifier.name, options)
    budget = data_budget(data, config.batch_size, type(method), config.uratio)  # after the check: divides by the batch
    if config.steps is not None:
        budget = given_budget(config.steps, budget)
    config = _run_config(method, data, config.image_size, classifier.name,
                         {**options, "steps": budget.steps, "batch_size": budget.batch_size})
    if verbose and not resume:
        print(budget.line(), flush=True)
    run, temporary = _run_dir(run_dir, resume)
    config.out = str(run.path)
    if resume:
        _check_resume(run, config, options)
    run.path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run.config_file, config.to_dict())
    try:
        with trainable_flags_kept(classifier):
            fitted = fit(lambda: classifier, data, method, config, run,
                         resume_from=run.checkpoints if resume else None, callbacks=callbacks,
                         stream=sys.stdout if verbose else io.StringIO())
    finally:
        if temporary:
            shutil.rmtree(run.path, ignore_errors=True)
    return AdaptResult(fitted.model, list(data.class_names), fitted.metrics, None if temporary else run.path)


def evaluate(model: keras.Model, data: Data, *, class_names: Sequence[str] | None = None) -> EvalResult:
    """Accuracy of a classifier on labeled data, preprocessed as in training.

    Args:
      model: images float32 `[B, S, S, 3]` (0..255) -> logits or probabilities.
      data: labeled images: a `tf.data.Dataset` of `(image, label)`, a `Source` or a spec.
      class_names: the classes of a dataset's labels (default `"0"`..`"K-1"`, K the model's outputs).

    Returns:
      an `EvalResult` (accuracy, per-class accuracy, confusion matrix).
    """
    outputs = int(model.output_shape[-1])
    source = as_source(data, "data", class_names or [str(k) for k in range(outputs)])
    if source is None or not source.info.labeled:
        raise DataError("data: evaluation needs labeled images")
    if source.info.num_classes != outputs:
        raise UserError(f"model: outputs {outputs} classes, data has {source.info.num_classes}")
    return evaluate_source(model, source, int(model.input_shape[1]))


def feed(method: str | Method, source: Data = None, target: Data = None, *, class_names: Sequence[str] | None = None,
         image_size: int = 32, batch_size: int = 32, uratio: int | None = None, seed: int = 0,
         flip: bool = False) -> tf.data.Dataset:
    """The training feed `adapt` builds for `method` from two data sets, to look at or reuse.

    Args:
      method: a method object or name; it decides the views (`weak`, `strong`, ...) and the
        default `uratio`.
      source: labeled source data (as for `adapt`).
      target: unlabeled target data (as for `adapt`).
      class_names: the classes of a labeled dataset's labels (required for one; a spec or
        Source names its own).
      image_size: model input side S.
      batch_size: labeled images per step.
      uratio: unlabeled images per labeled image (None: the method's default).
      seed: fixes data order and augmentation.
      flip: random horizontal flips.

    Returns:
      an infinite `tf.data.Dataset` of dicts `{"seed": int64 [2], "source": {"labels": int64 [B],
      VIEW: float32 [B, S, S, 3] (0..255), ...}, "target": {"labels": int64 [U] (-1 unknown),
      VIEW: float32 [U, S, S, 3], ...}}` with U = uratio * B (see `pipelines.feeds`).
    """
    from tfuda.engine.run import method_feed_spec

    method = _method(method)
    opened_source = as_source(source, "source", class_names)
    opened_target = as_source(target, "target", class_names or (opened_source.info.class_names
                                                                if opened_source is not None else None))
    _check_parts(method, opened_source, opened_target)
    return make_feed(opened_source, opened_target, method_feed_spec(
        method, global_batch_size=batch_size, uratio=uratio, image_size=image_size, flip=flip, seed=seed))
