"""Train one run directory from a `Config`: data, model, method, loop, final artifacts."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import keras
import tensorflow as tf

from pipelines.augment import Augment
from pipelines.errors import DataError, UserError
from pipelines.feeds import FeedSpec, make_feed
from pipelines.sources import Source, canonical_spec, check_same_classes, open_source
from pipelines.splits import carve_per_class
from tfuda.config import Config
from tfuda.engine import loop
from tfuda.engine.checkpoints import Checkpoints
from tfuda.engine.distribute import is_chief, make_strategy, split_for_replicas, task
from tfuda.engine.evaluate import evaluate
from tfuda.engine.trainer import Adapter, make_optimizer
from tfuda.methods import method_class
from tfuda.models import build_model
from tfuda.rundir import RunDir, write_json_atomic


def use_xla(setting: str) -> bool:
    """`auto` -> on when a GPU is visible (XLA is slower than TF's default path on CPU)."""
    if setting == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return setting == "on"


@dataclasses.dataclass
class RunData:
    """The opened sources of a run.

    `source` is the labeled training set (K per class of it under SSL), `labeled_target` the
    K-per-class labeled target images of SSDA.
    """

    source: Source
    target: Source | None
    eval_target: Source | None
    eval_source: Source | None
    labeled_target: Source | None = None


def open_run_data(config: Config, needs_target: bool) -> RunData:
    """Opens and checks the run's sources for its setting; defaults eval sets to held-out splits."""
    kwargs = dict(strict=config.strict, tfds_data_dir=config.tfds_data_dir,
                  tfds_download=config.tfds_download)
    source = open_source(config.source, **kwargs)
    if not source.info.labeled:
        raise DataError(f"--source '{config.source}' has no labels: give class subfolders, an npz "
                        "with 'y', or a labeled TFDS/built-in spec")
    if config.setting != "uda" and not needs_target:
        raise DataError(f"--setting {config.setting} needs unlabeled images, which --method {config.method} "
                        "does not use: choose adamatch or fixmatch")
    full_source = source
    labeled_target = None
    if config.setting == "ssl":
        source = carve_per_class(source, config.labeled_per_class, config.seed, "--source")
    elif config.setting == "ssda":
        labeled_target = carve_per_class(open_source(config.target_labeled, **kwargs),
                                         config.labeled_per_class, config.seed, "--target-labeled")
        check_same_classes(source.info, labeled_target.info, "--target-labeled")
    target = open_source(config.target, **kwargs) if needs_target else None
    if target is not None:
        check_same_classes(source.info, target.info, "--target")

    def eval_set(flag: str, spec: str | None, default: str | None) -> Source | None:
        spec = spec or default
        if spec is None:
            return None
        opened = open_source(spec, **kwargs)
        if not opened.info.labeled:
            raise DataError(f"{flag} '{spec}' has no labels; an evaluation set must be labeled")
        check_same_classes(source.info, opened.info, flag)
        return opened

    target_held_out = None
    if config.target:
        # The held-out split of a built-in target, without opening the target twice.
        target_held_out = (target.info.held_out if target is not None
                           else open_source(config.target, **kwargs).info.held_out)
    eval_target = eval_set("--eval-target", config.eval_target, target_held_out)
    if (labeled_target is not None and eval_target is not None
            and canonical_spec(config.target_labeled) == canonical_spec(eval_target.info.spec)):
        raise DataError(f"--target-labeled '{config.target_labeled}' is the target evaluation set "
                        f"'{eval_target.info.spec}': its labels would be trained on and then reported as "
                        "accuracy. Carve the labeled target images from other data, or give --eval-target "
                        "a held-out set")
    return RunData(
        source=source,
        target=target,
        eval_target=eval_target,
        eval_source=eval_set("--eval-source", config.eval_source, full_source.info.held_out),
        labeled_target=labeled_target,
    )


def _evaluators(data: RunData, image_size: int) -> dict:
    sets = {"target": data.eval_target, "source": data.eval_source}
    return {name: (lambda model, s=s: evaluate(model, s, image_size))
            for name, s in sets.items() if s is not None}


def train_run(config: Config, run: RunDir, *, resume_from: Path | None = None, stream=None) -> dict:
    """Trains (or resumes) the run in `run` and writes its artifacts; returns `metrics.json`.

    `resume_from`: a checkpoint directory to continue from (the run's own, or on another worker
    of a multi-worker run, the chief's); None starts afresh.

    Keras' global dtype policy is set for the run (mixed_float16 under `--mixed-precision`) and
    restored afterwards.

    Raises:
      UserError: bad data or settings.
      loop.NonFiniteLoss: the loss went NaN/inf (metrics.json then says `failed`).
    """
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16" if config.mixed_precision else "float32")
    try:
        return _train_run(config, run, resume_from, stream or sys.stdout)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train_run(config: Config, run: RunDir, resume_from: Path | None, stream) -> dict:
    strategy = make_strategy(config.strategy)  # first: multi-worker needs it before other ops
    replicas = strategy.num_replicas_in_sync
    chief = is_chief()
    method_cls = method_class(config.method)
    data = open_run_data(config, needs_target=bool(method_cls.target_views))
    class_names = list(data.source.info.class_names)

    spec = FeedSpec(
        batch_size=config.batch_size * replicas,
        uratio=config.uratio or method_cls.default_uratio,
        image_size=config.image_size,
        source_views=method_cls.source_views,
        target_views=method_cls.target_views,
        augment=Augment(flip=config.flip),
        seed=config.seed,
        on_device=config.augment_on == "device",
    )
    method = method_cls.from_config(config)
    method.monitor_target_labels = bool(data.target is not None and data.target.info.labeled)
    xla = use_xla(config.xla)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config.model, len(class_names), config.image_size, config.weights)
        adapter = Adapter(model, method, total_steps=config.steps, weight_decay=config.weight_decay,
                          ema_decay=config.ema_decay, feed_spec=spec)
        schedule = method.learning_rate(config.lr, config.steps)
        adapter.compile(optimizer=make_optimizer(schedule, mixed_precision=config.mixed_precision), jit_compile=xla)
    checkpoints = Checkpoints(adapter, str(run.checkpoints))
    start_step = checkpoints.restore_latest(str(resume_from)) if resume_from is not None else 0
    wall_before = float(checkpoints.wall_time.numpy())

    unlabeled = f" + {spec.uratio * spec.batch_size} unlabeled" if data.target is not None else ""
    print(
        f"tfuda {config.method} ({config.setting}): {data.source.info.spec}"
        f"{' + ' + data.labeled_target.info.spec if data.labeled_target else ''} -> "
        f"{config.target if data.target else '(no target data)'} | "
        f"{config.model} ({model.count_params() / 1e6:.2f}M params), {config.image_size}px | "
        f"batch {spec.batch_size}{unlabeled}{f' over {replicas} replicas' if replicas > 1 else ''} | steps {start_step}->{config.steps} | "
        f"xla {'on' if xla else 'off'}, augment on {config.augment_on} | run {run.path}",
        file=stream, flush=True)

    progress = loop.ProgressLogger(config.steps, stream=stream)
    scalars = loop.ScalarLogger(str(run.logs / "train"))
    evaluators = _evaluators(data, config.image_size) if chief else {}
    evaluation = loop.PeriodicEvaluation(evaluators, config.eval_every, config.steps, scalars, progress)
    callbacks = [loop.NonFiniteGuard(), progress, scalars,
                 loop.PeriodicCheckpoint(checkpoints, config.checkpoint_every, config.steps), evaluation]
    feed = split_for_replicas(
        make_feed(data.source, data.target, spec, start_step=start_step, labeled_extra=data.labeled_target),
        strategy)
    try:
        last = loop.train_loop(adapter, feed, start_step=start_step, total_steps=config.steps,
                               callbacks=callbacks, wall_time_before=wall_before)
    except loop.NonFiniteLoss as err:
        write_json_atomic(run.metrics_file, {
            "status": "failed", "error": str(err), "steps": err.step,
            "last_checkpoint": checkpoints.latest, "config": config.to_dict()})
        raise
    wall_time = last.get(loop.WALL_TIME, wall_before)

    ema = adapter.ema.average
    steps = int(adapter.optimizer.iterations.numpy())
    if not chief:
        return {"status": "completed", "steps": steps}
    # The evaluation at the last step already measured the final EMA model (not so on a resume
    # that had no steps left to train).
    final = evaluation.latest if evaluation.latest_step == steps else {
        name: fn(ema) for name, fn in evaluators.items()}
    this_task = task()
    metrics = {"status": "completed", "steps": steps,
               "task": None if this_task is None else f"{this_task[0]} {this_task[1]}",
               "source_accuracy": None, "target_accuracy": None,
               "per_class_target_accuracy": None, "target_confusion": None,
               "wall_time_s": round(wall_time, 2), "eval_history": evaluation.history,
               "eval_target": data.eval_target.info.spec if data.eval_target else None,
               "eval_source": data.eval_source.info.spec if data.eval_source else None,
               "config": config.to_dict()}
    if "target" in final:
        result = final["target"]
        metrics.update(target_accuracy=result.accuracy, per_class_target_accuracy=result.per_class,
                       target_confusion=result.confusion)
    if "source" in final:
        metrics["source_accuracy"] = final["source"].accuracy
    save_model_atomic(ema, run.model_file)
    write_json_atomic(run.class_names_file, class_names)
    write_json_atomic(run.metrics_file, metrics)
    print("done: " + "  ".join(
        f"{name} accuracy {metrics[name + '_accuracy']:.4f}" if metrics[name + "_accuracy"] is not None
        else f"{name} accuracy n/a (no labeled eval set)" for name in ("source", "target"))
        + f"  wall time {wall_time:.0f}s  model {run.model_file}", file=stream, flush=True)
    return metrics


def save_model_atomic(model: keras.Model, path) -> None:
    """Saves a `.keras` file next to `path` under a temporary name, then renames it into place."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
