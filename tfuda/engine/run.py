"""Train one run directory from a `Config`: data, model, method, loop, final artifacts."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import keras
import tensorflow as tf

from pipelines.augment import Augment
from pipelines.errors import DataError
from pipelines.feeds import FeedSpec, make_feed
from pipelines.run_data import RunData, TrainingData
from tfuda.atomic import save_model_atomic, write_json_atomic
from tfuda.budget import Budget, default_budget, given_budget
from tfuda.config import SELECT_LAST, Config, ConfigError
from tfuda.engine import loop
from tfuda.engine.batchnorm import with_target_statistics
from tfuda.engine.checkpoints import Checkpoints
from tfuda.engine.distribute import is_chief, make_strategy, split_for_replicas, task
from tfuda.engine.evaluate import EvalResult, evaluate
from tfuda.engine.selection import Selection
from tfuda.engine.trainer import TrainingModel, make_optimizer
from tfuda.environment import environment
from tfuda.methods import Method, method_class
from tfuda.models import build_model
from tfuda.models.common import num_classes_of
from tfuda.models.init import init_class_names, load_init
from tfuda.rundir import RunDir
from tfuda.validate import ESTIMATE
from tfuda.validate.advice import advice
from tfuda.validate.alarm import model_alarmed
from tfuda.validate.estimate import described_estimate
from tfuda.validate.sample import HELD_OUT_SIZE, HeldOutSource, TargetSample, TargetValidation, source_prior

DEFAULT_VALIDATION_SIZE = 1000


def use_xla(setting: str) -> bool:
    """`auto` -> on when a GPU is visible (XLA is slower than TF's default path on CPU)."""
    if setting == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return setting == "on"


def complete_for_method(config: Config, given: set[str]) -> Config:
    """Checks `method_args` and fills what depends on the method: every hyper-parameter's value
    (defaults included, so a run keeps them when a default changes later), its default `lr` and
    momentum; for a source-free method no source (warning when `--source` was given); for
    `--init RUN` that run's image size.

    Args:
      config: a validated config.
      given: the fields the user set explicitly (command line or config file).
    """
    method_cls = method_class(config.method)
    # an unknown, ill-typed or invalid --method-arg fails here, before any write
    config.method_args = method_cls.for_run(config).hyperparameter_values()
    method_cls.fill_defaults(config)
    if method_cls.source_free():
        if config.init is None:
            raise ConfigError(f"--method {config.method} adapts an existing model without source data: give "
                              "--init RUN_DIR or --init MODEL.keras")
        if config.setting != "uda":
            raise ConfigError(f"--method {config.method} is source-free: --setting {config.setting} does not apply")
        if "source" in given:
            print(f"warning: --source '{config.source}' is not used by the source-free --method {config.method}",
                  file=sys.stderr)
        config.source = None
    if config.init is not None and "image_size" not in given and os.path.isdir(config.init):
        config.image_size = RunDir(config.init).image_size()
    return config


def keep_method_args(config: Config, saved: dict[str, Any]) -> Config:
    """On `--resume`: the run keeps the hyper-parameters it was started with.

    Args:
      config: the resumed config, `method_args` = the saved ones updated with those given now.
      saved: the `method_args` of the run's `config.json` (a run written before every value was
        recorded has only the given ones; the others take today's defaults).

    Raises:
      ConfigError: a `--method-arg` given now changes a saved value.
    """
    method_cls = method_class(config.method)
    before = method_cls(**method_cls.parse_args(saved)).hyperparameter_values()
    now = method_cls.for_run(config).hyperparameter_values()
    changed = sorted(name for name in now if now[name] != before[name])
    if changed:
        raise ConfigError("--resume continues the saved run; --method-arg cannot change: "
                          + ", ".join(f"{name} was {before[name]!r}, given {now[name]!r}" for name in changed))
    config.method_args = now
    return config


def open_training_data(config: Config, method_cls: type[Method], class_names: list[str] | None) -> TrainingData:
    """Opens and checks every data set of the run before the first step.

    `class_names`: the classes of an `--init` model, when it names them.
    """
    needs_target = bool(method_cls.target_views)
    if config.setting != "uda" and not needs_target:
        raise DataError(f"--setting {config.setting} needs unlabeled images, which --method {config.method} "
                        "does not use: choose adamatch or fixmatch")
    values = {**config.to_dict(), "source": None} if method_cls.source_free() else config.to_dict()
    return RunData(values, class_names).open_all(needs_target)


def data_budget(data: TrainingData, batch_size: int | None, method_cls: type[Method], uratio: int | None,
                replicas: int = 1) -> Budget:
    """The default budget (`tfuda.budget`) of training `method_cls` (at `uratio`, None: its
    default) on `data` at `batch_size` labeled images a step per replica (None: the data's):
    passes over `data.target` (its size unknown: the floor)."""
    return default_budget(data.target.info.num_examples if data.target is not None else None, batch_size,
                          (uratio or method_cls.default_uratio) if method_cls.target_views else 0, replicas)


def initial_classifier(config: Config, num_classes: int) -> keras.Model:
    """`--init`'s model (checked against the classes and image size), else a new `--model`."""
    if config.init is None:
        return build_model(config.model, num_classes, config.image_size, config.weights)
    model, _ = load_init(config.init, config.class_names)
    units, size = num_classes_of(model), int(model.input_shape[1])
    if units != num_classes:
        raise ConfigError(f"--init '{config.init}' outputs {units} classes, the data has {num_classes}: "
                          "give a model trained on these classes (or --class-names in its output order)")
    if size != config.image_size:
        raise ConfigError(f"--init '{config.init}' takes {size}x{size} images: give --image-size {size}")
    return model


def method_feed_spec(method: Method, *, global_batch_size: int, uratio: int | None, image_size: int,
                     flip: bool = False, seed: int = 0, on_device: bool = False,
                     total_steps: int | None = None) -> FeedSpec:
    """The feed `method` trains on: its views (only those of the step's phase, given
    `total_steps`), and `uratio` (None: the method's default)."""
    return FeedSpec(
        global_batch_size=global_batch_size,
        uratio=uratio or method.default_uratio,
        image_size=image_size,
        source_views=method.source_views,
        target_views=method.target_views,
        augment=Augment(flip=flip),
        seed=seed,
        on_device=on_device,
        phases=method.view_phases(total_steps) if total_steps is not None else None,
    )


def feed_spec(config: Config, method: Method, replicas: int) -> FeedSpec:
    """The method's feed for this config; `--batch-size` is per replica."""
    return method_feed_spec(method, global_batch_size=config.batch_size * replicas, uratio=config.uratio,
                            image_size=config.image_size, flip=config.flip, seed=config.seed,
                            on_device=config.augment_on == "device", total_steps=config.steps)


def build_training_model(config: Config, method: Method, make_classifier: Callable[[], keras.Model],
                         spec: FeedSpec, strategy: tf.distribute.Strategy) -> TrainingModel:
    """The classifier (`make_classifier()`, seeded by `--seed`) wrapped in a compiled
    `TrainingModel`, in `strategy`'s scope."""
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        classifier = make_classifier()
        trainer = TrainingModel(classifier, method, total_steps=config.steps, weight_decay=config.weight_decay,
                                ema_decay=config.ema_decay, feed_spec=spec)
        schedule = method.learning_rate(config.lr, config.steps)
        trainer.compile(optimizer=make_optimizer(schedule, mixed_precision=config.mixed_precision,
                                                       nesterov=config.momentum == "nesterov"),
                        jit_compile=use_xla(config.xla))
    return trainer


def describe_run(config: Config, data: TrainingData, trainer: TrainingModel, spec: FeedSpec, replicas: int,
                 start_step: int, run: RunDir) -> str:
    """The first line a run prints: data, model, batch, steps, placement, run directory."""
    target = data.target if spec.target_views else None
    unlabeled = f"{spec.uratio * spec.global_batch_size} unlabeled"
    if data.source is None:
        labeled, batch = "(no source data)", unlabeled
    else:
        labeled = data.source.info.spec + (f" + {data.target_labeled.info.spec}" if data.target_labeled else "")
        batch = f"{spec.global_batch_size}" + (f" + {unlabeled}" if target is not None else "")
    model = f"init {config.init}" if config.init else config.model
    return (f"tfuda {config.method} ({config.setting}): {labeled} -> "
            f"{config.target if target is not None else '(no target data)'} | "
            f"{model} ({trainer.classifier.count_params() / 1e6:.2f}M params), {config.image_size}px | "
            f"batch {batch}{f' over {replicas} replicas' if replicas > 1 else ''} | "
            f"steps {start_step}->{config.steps} | xla {'on' if trainer.jit_compile else 'off'}, "
            f"augment on {config.augment_on} | run {run.path}")


def evaluators(data: TrainingData, image_size: int) -> dict:
    """{`target`/`source`: model -> EvalResult} for the labeled evaluation sets the run has."""
    sets = {"target": data.eval_target, "source": data.eval_source}
    return {name: (lambda model, s=s: evaluate(model, s, image_size))
            for name, s in sets.items() if s is not None}


def target_sample(config: Config, data: TrainingData) -> TargetSample | None:
    """The fixed sample of the unlabeled target that validators score (and batch-norm statistics
    are re-estimated on): `--validation-size` images (default 1000, or all of a smaller target)
    of a `--seed`-ed shuffle of the target training images; None without target data."""
    target = data.target
    if target is None:
        return None
    available = target.info.num_examples
    if config.validation_size is not None and available is not None and config.validation_size > available:
        raise ConfigError(f"--validation-size {config.validation_size} is larger than the target "
                          f"'{target.info.spec}' ({available} images): give at most {available}")
    size = config.validation_size or min(DEFAULT_VALIDATION_SIZE, available or DEFAULT_VALIDATION_SIZE)
    return TargetSample(target, size, config.image_size, config.seed)


def validation(config: Config, data: TrainingData, sample: TargetSample | None,
               from_model: bool) -> TargetValidation | None:
    """model -> (label-free validator scores, collapse alarm or None, estimated target prior) on
    the target `sample` (None without one); `from_model`: the run starts from an existing model,
    evaluated first (`TargetValidation`). With a held-out labeled source set (a source-free run:
    `--eval-source`) the scores include the estimated target accuracy."""
    if sample is None:
        return None
    held_out = None
    if data.eval_source is not None:
        held_out = HeldOutSource(data.eval_source, HELD_OUT_SIZE, config.image_size, Augment(flip=config.flip),
                                 config.seed)
    prior = source_prior(data.source or data.eval_source, len(data.class_names))
    return TargetValidation(sample, prior, data.class_names, from_model, held_out)


def completed_metrics(config: Config, data: TrainingData, steps: int, wall_time: float,
                      final: dict[str, EvalResult], validators: dict[str, float], prior: list[float] | None,
                      history: list[dict], alarms: list[dict], selection: dict, status: str = "completed",
                      method_report: list[str] = ()) -> dict:
    """`metrics.json` of a finished (or rolled-back) run (see `tfuda.rundir`); `final`,
    `validators` and `prior` (the estimated target class prior) are those of the run's model,
    chosen as `selection` says; `method_report`: the method's `report` of the run."""
    this_task = task()
    target, source = final.get("target"), final.get("source")
    metrics = {
        "status": status, "steps": steps, "selection": selection,
        "task": None if this_task is None else f"{this_task[0]} {this_task[1]}",
        "source_accuracy": source.accuracy if source else None,
        "target_accuracy": target.accuracy if target else None,
        "per_class_target_accuracy": target.per_class if target else None,
        "target_confusion": target.confusion if target else None,
        "validators": validators, "estimated_target_prior": prior, "alarms": alarms,
        "wall_time_s": round(wall_time, 2), "eval_history": history,
        "advice": advice(history, steps), "method_report": list(method_report),
        "eval_target": data.eval_target.info.spec if data.eval_target else None,
        "eval_source": data.eval_source.info.spec if data.eval_source else None,
        "config": config.to_dict(), "environment": environment(),
    }
    metrics["estimated_target_accuracy"] = described_estimate(validators.get(ESTIMATE), model_alarmed(metrics))
    return metrics


def check_select(config: Config, data: TrainingData) -> None:
    """Refuses a `--select` validator the run cannot compute."""
    if config.select == SELECT_LAST:
        return
    if data.target is None:
        raise ConfigError(f"--select {config.select} scores the unlabeled target, and this run has no --target")
    if config.select == "source_accuracy" and data.eval_source is None:
        raise ConfigError("--select source_accuracy needs a labeled source evaluation set: give --eval-source")
    if config.select == ESTIMATE and data.eval_source is None:
        raise ConfigError(f"--select {ESTIMATE} calibrates on held-out labeled source images, which this run "
                          "has not: give --eval-source, or --select another validator")


def finish(config: Config, data: TrainingData, run: RunDir, trainer: TrainingModel, evaluation: loop.PeriodicEvaluation,
           selection: Selection, wall_time: float, rolled_back: bool, stream: TextIO) -> Fitted:
    """Writes the run's model (the final EMA weights, or `selection`'s candidate), class names and
    `metrics.json`; prints the `done:` line; returns the metrics and that model."""
    steps = int(trainer.optimizer.iterations.numpy())
    if selection.uses_candidate(rolled_back):
        model = selection.load()
        results, scores, _, prior = evaluation.evaluate(model)
        final = (results, scores, prior)
        selection.publish(run.model_file)
    else:
        model = evaluation.inference_model(trainer.ema.average)
        final = evaluation.final(model, steps)
        save_model_atomic(model, run.model_file)
    metrics = completed_metrics(config, data, steps, wall_time, *final, evaluation.history, evaluation.alarms,
                                selection.summary(steps, rolled_back), "rolled_back" if rolled_back else "completed",
                                trainer.method.report(trainer.total_steps))
    write_json_atomic(run.class_names_file, list(data.class_names))
    write_json_atomic(run.metrics_file, metrics)
    chosen = "" if config.select == SELECT_LAST and not rolled_back else f"  (model: {metrics['selection']['reason']})"
    print("done: " + "  ".join(
        f"{name} accuracy {metrics[name + '_accuracy']:.4f}" if metrics[name + "_accuracy"] is not None
        else f"{name} accuracy n/a (no labeled eval set)" for name in ("source", "target"))
        + (f"  est. target accuracy {estimated['value']:.2f} (±{estimated['max_error_measured']:.2f})"
           if (estimated := metrics["estimated_target_accuracy"]) else "")
        + f"  wall time {metrics['wall_time_s']:.0f}s  model {run.model_file}{chosen}", file=stream, flush=True)
    for line in metrics["method_report"] + metrics["advice"]:
        print(line, file=stream, flush=True)
    return Fitted(metrics, model)


def train_run(config: Config, run: RunDir, *, resume_from: Path | None = None,
              stream: TextIO | None = None) -> dict:
    """Trains (or resumes) the run a command-line `Config` describes, in `run`; returns `metrics.json`.

    Opens the config's data specs, builds its `--model` (or loads `--init`) and its method, then
    `fit`s: the command line is these public calls (see `tfuda.adapt` for the same from Python).
    Raises what `fit` raises.
    """
    strategy = make_strategy(config.strategy)  # first: multi-worker needs it before other ops
    method_cls = method_class(config.method)
    data = open_training_data(config, method_cls,
                              init_class_names(config.init, config.class_names) if config.init else None)
    budget = data_budget(data, config.batch_size, method_cls, config.uratio, strategy.num_replicas_in_sync)
    if config.steps is not None:
        budget = given_budget(config.steps, budget)
    if resume_from is None:  # a resumed run keeps its recorded budget and said it when it started
        write_json_atomic(run.config_file, config.set_budget(budget.steps, budget.batch_size).to_dict())
        print(budget.line(), file=stream or sys.stdout, flush=True)
    return fit(lambda: initial_classifier(config, len(data.class_names)), data, method_cls.for_run(config), config,
               run, resume_from=resume_from, stream=stream, strategy=strategy).metrics


@dataclasses.dataclass(frozen=True)
class Fitted:
    """What `fit` returns: `metrics.json` and the run's model (None on a worker that is not the chief)."""

    metrics: dict
    model: keras.Model | None


def fit(make_classifier: Callable[[], keras.Model], data: TrainingData, method: Method, config: Config,
        run: RunDir, *, resume_from: Path | None = None, callbacks: Sequence[keras.callbacks.Callback] = (),
        stream: TextIO | None = None, strategy: tf.distribute.Strategy | None = None) -> Fitted:
    """Trains `method` on `data` with the training settings of `config`, writing the run in `run`.

    Args:
      make_classifier: builds (or returns) the classifier in tfuda's form (`tfuda.as_classifier`);
        called once, inside the strategy's scope, after seeding with `config.seed`.
      data: the opened data sets; `config`'s data specs are only recorded.
      method: the method with its hyper-parameters.
      config: a validated `Config` with `lr` (`complete_for_method`), `steps` and `batch_size` set
        (`Config.set_budget` from `data_budget(...)` when left to the data).
      run: the run directory (its `config.json` written by the caller).
      resume_from: a checkpoint directory to continue from (the run's own, or on another worker
        of a multi-worker run, the chief's); None starts afresh.
      callbacks: extra Keras callbacks, called after tfuda's own with the same logs.
      stream: where progress goes (default stdout).
      strategy: the `tf.distribute` strategy (default: made from `config.strategy`).

    Keras' global dtype policy is set for the run (mixed_float16 under `mixed_precision`) and
    restored afterwards.

    Raises:
      UserError: bad data or settings.
      loop.NonFiniteLoss: the loss went NaN/inf (metrics.json then says `failed`).
      loop.Collapsed: the collapse alarm fired under `--on-collapse stop`, or under `rollback`
        before any evaluation could be rolled back to (`collapsed`).
    """
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16" if config.mixed_precision else "float32")
    try:
        return _fit(make_classifier, data, method, config, run, resume_from, list(callbacks), stream or sys.stdout,
                    strategy or make_strategy(config.strategy))
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _fit(make_classifier: Callable[[], keras.Model], data: TrainingData, method: Method, config: Config,
         run: RunDir, resume_from: Path | None, extra_callbacks: list, stream: TextIO,
         strategy: tf.distribute.Strategy) -> Fitted:
    """The run's stages in order, each a named call (the list of stages is the point)."""
    replicas = strategy.num_replicas_in_sync
    target = data.target if method.target_views else None
    chief = is_chief()
    check_select(config, data)
    keras.utils.set_random_seed(config.seed)  # tf.data's seeded shuffles also depend on the global seed
    sample = target_sample(config, data) if chief else None
    from_model = method.source_free() or config.init is not None
    validate = validation(config, data, sample, from_model)
    prepare = with_target_statistics(sample.images) if sample is not None and method.reestimates_batch_norm else None
    spec = feed_spec(config, method, replicas)
    method.monitor_target_labels = bool(target is not None and target.info.labeled)
    trainer = build_training_model(config, method, make_classifier, spec, strategy)
    checkpoints = Checkpoints(trainer, str(run.checkpoints))
    start_step = checkpoints.restore_latest(str(resume_from)) if resume_from is not None else 0
    wall_before = float(checkpoints.wall_time.numpy())
    print(describe_run(config, data, trainer, spec, replicas, start_step, run), file=stream, flush=True)

    progress = loop.ProgressLogger(config.steps, stream=stream)
    scalars = loop.ScalarLogger(str(run.logs / "train"))
    selection = Selection(config.select, run, keep=config.select != SELECT_LAST or config.on_collapse == "rollback")
    evaluation = loop.PeriodicEvaluation(evaluators(data, config.image_size) if chief else {}, validate,
                                         config.eval_every, config.steps, scalars, progress, config.on_collapse,
                                         selection if chief else None, run.evaluations_file if chief else None,
                                         start_step, prepare, evaluate_start=from_model)
    if validate is not None:
        validate.resume(evaluation.history)
    # The evaluation runs before the checkpoint of its step, so a collapse that stops the run is
    # never checkpointed.
    callbacks = [*method.callbacks(trainer.classifier, target, spec), loop.NonFiniteGuard(), progress, scalars,
                 evaluation, loop.PeriodicCheckpoint(checkpoints, config.checkpoint_every, config.steps),
                 *extra_callbacks]
    feed = split_for_replicas(
        make_feed(data.source, target, spec, start_step=start_step, target_labeled=data.target_labeled), strategy)
    try:
        wall_time = loop.train_loop(trainer, feed, start_step=start_step, total_steps=config.steps,
                                    callbacks=callbacks, wall_time_before=wall_before, epoch_steps=config.eval_every,
                                    epoch_logs=evaluation.epoch_logs).get(loop.WALL_TIME, wall_before)
        rolled_back = False
    except (loop.NonFiniteLoss, loop.Collapsed) as err:
        collapsed = isinstance(err, loop.Collapsed)
        if not (collapsed and config.on_collapse == "rollback" and selection.chosen is not None):
            write_json_atomic(run.metrics_file, {
                "status": "collapsed" if collapsed else "failed", "error": str(err),
                "steps": err.step, "last_checkpoint": checkpoints.latest, "alarms": evaluation.alarms,
                "eval_history": evaluation.history, "config": config.to_dict(), "environment": environment()})
            raise
        progress.message(f"warning: {err}; the run's model rolls back to the evaluation at step "
                         f"{selection.chosen['step']} (--on-collapse rollback)")
        wall_time, rolled_back = err.wall_time, True
    if not chief:
        return Fitted({"status": "completed", "steps": int(trainer.optimizer.iterations.numpy())}, None)
    return finish(config, data, run, trainer, evaluation, selection, wall_time, rolled_back, stream)
