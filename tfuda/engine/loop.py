"""The training loop and its Keras callbacks: progress, TensorBoard, NaN guard, checkpoints, eval.

The loop calls callbacks as `Model.fit` does, with each evaluation interval (`--eval-every`
steps) as an epoch: `on_epoch_begin(epoch)`, then per step `on_train_batch_begin/end`, then
`on_epoch_end(epoch, logs)` with the epoch's mean step logs (`loss`, `losses/...`,
`monitors/...`) and the evaluation's `val_target_accuracy`, `val_source_accuracy` and
`val_<validator>` (label-free, higher is better). So stock Keras callbacks work at their
defaults: `TensorBoard` (epoch scalars), `EarlyStopping(monitor="val_bnm", mode="max")`,
`ModelCheckpoint` (saving a `TrainingModel` saves its EMA classifier) and `CSVLogger`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tfuda.atomic import write_json_atomic
from tfuda.engine.checkpoints import Checkpoints
from tfuda.engine.evaluate import EvalResult
from tfuda.engine.selection import Selection
from tfuda.engine.trainer import TrainingModel

WALL_TIME = "wall_time_s"


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss."""

    def __init__(self, step: int, logs: dict[str, float]):
        bad = sorted(k for k, v in logs.items() if not math.isfinite(v))
        super().__init__(
            f"non-finite loss at step {step} ({', '.join(bad)}); training stopped. "
            "Lower --lr, check the input data, or try --mixed-precision off")
        self.step = step


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class ProgressLogger(keras.callbacks.Callback):
    """A one-line progress bar: step, loss, mask rate, steps/s, ETA.

    Redraws in place on a terminal; prints a line every `every` steps otherwise (CI logs).
    Once `estimate_after` steps are timed (the first step, which traces and compiles, is not),
    it says how long the rest takes on this machine: CPUs differ by 4x and more.
    """

    def __init__(self, total_steps: int, every: int = 50, stream=None, estimate_after: int = 20):
        super().__init__()
        self.total_steps = total_steps
        self.every = every
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.estimate_after = estimate_after

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()
        self._first_step = None

    def on_train_batch_end(self, batch, logs=None):
        step = batch + 1
        if self._first_step is None:
            self._first_step, self._start = step, time.perf_counter()
            return
        rate = (step - self._first_step) / max(time.perf_counter() - self._start, 1e-9)
        if step - self._first_step == self.estimate_after and step < self.total_steps:
            self.message(f"timing: {rate:.2f} steps/s on this machine, about "
                         f"{_fmt_duration((self.total_steps - step) / rate)} for the remaining "
                         f"{self.total_steps - step} steps (plus evaluations)")
        done = step == self.total_steps
        if not (self.tty or step % self.every == 0 or done):
            return
        width = 24
        filled = int(width * step / self.total_steps)
        parts = [f"{step}/{self.total_steps} [{'=' * filled}{'.' * (width - filled)}]",
                 f"loss {logs['loss']:.4f}"]
        if "monitors/mask_rate" in logs:
            parts.append(f"mask {logs['monitors/mask_rate']:.2f}")
        parts += [f"{rate:.2f} steps/s", f"ETA {_fmt_duration((self.total_steps - step) / max(rate, 1e-9))}"]
        line = "  ".join(parts)
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Prints a line without breaking the in-place bar."""
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()


class ScalarLogger(keras.callbacks.Callback):
    """Writes every log value as a TensorBoard scalar every `every` steps."""

    def __init__(self, log_dir: str, every: int = 10):
        super().__init__()
        self.writer = tf.summary.create_file_writer(log_dir)
        self.every = every

    def on_train_batch_end(self, batch, logs=None):
        step = batch + 1
        if step % self.every == 0:
            self.write(step, logs)

    def write(self, step: int, values: dict[str, float]) -> None:
        with self.writer.as_default(step=step):
            for key, value in values.items():
                tf.summary.scalar(key, value)
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()


class Collapsed(RuntimeError):
    """The collapse alarm fired under `--on-collapse stop` or `rollback`."""

    def __init__(self, step: int, message: str, on_collapse: str = "stop", wall_time: float | None = None):
        super().__init__(f"step {step}: {message}; training stopped (--on-collapse {on_collapse}), the checkpoints "
                         "before this evaluation are kept")
        self.step, self.wall_time = step, wall_time


class NonFiniteGuard(keras.callbacks.Callback):
    """Raises `NonFiniteLoss` on the first step whose loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        if not math.isfinite(logs["loss"]):
            raise NonFiniteLoss(batch + 1, logs)


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint every `every` steps and at the last step."""

    def __init__(self, checkpoints: Checkpoints, every: int, total_steps: int):
        super().__init__()
        self.checkpoints, self.every, self.total_steps = checkpoints, every, total_steps

    def on_train_batch_end(self, batch, logs=None):
        step = batch + 1
        if step % self.every == 0 or step == self.total_steps:
            self.checkpoints.save(step, logs[WALL_TIME])


class PeriodicEvaluation(keras.callbacks.Callback):
    """Every `every` steps and at the end, evaluates the EMA model: `eval/<name>_accuracy` on the
    labeled evaluation sets and `validators/<name>` without labels.

    Args:
      evaluators: name (`target`, `source`) -> function model -> `EvalResult`.
      validate: model -> ({validator name: score}, collapse alarm or None, estimated target
        prior `[K]`) on the unlabeled target sample (`tfuda.validate.sample.TargetValidation`),
        or None.
      every, total_steps: when to evaluate.
      scalars, progress: where the results are logged.
      on_collapse: `warn` (print a warning, record it in `alarms`), `stop` or `rollback` (also
        raise `Collapsed`; the caller rolls back to `selection`'s candidate).
      selection: offered every evaluation (`tfuda.engine.selection`), or None.
      record: a JSON file that keeps `history` and `alarms` after every evaluation, so a resumed
        run starts from them (None: kept in memory only).
      start_step: the step training starts from; of a recorded history, the evaluations up to it
        are kept (later ones were not checkpointed and run again).
      prepare: EMA model -> the model to evaluate, select and save (e.g. with batch-norm
        statistics re-estimated on the target, `tfuda.engine.batchnorm`); None: the EMA model.
      evaluate_start: also evaluate the model the run starts from, as given (step 0 of
        `history`; for a run from an existing model, what `tfuda.validate.advice` compares the end
        with). It is not offered to `selection` and raises no alarm: the run has not changed it.

    The latest results stay in `latest`/`latest_scores`/`latest_prior` (step in `latest_step`),
    so the end of a run reuses them instead of evaluating again; `history` has one entry per
    evaluation (with `estimated_target_prior`).
    """

    def __init__(self, evaluators: dict[str, Callable[[keras.Model], EvalResult]], validate: Callable | None,
                 every: int, total_steps: int, scalars: ScalarLogger, progress: ProgressLogger,
                 on_collapse: str = "warn", selection: Selection | None = None, record: Path | None = None,
                 start_step: int = 0, prepare: Callable[[keras.Model], keras.Model] | None = None,
                 evaluate_start: bool = False):
        super().__init__()
        self.evaluate_start = evaluate_start and start_step == 0
        self.evaluators, self.validate, self.every, self.total_steps = evaluators, validate, every, total_steps
        self.scalars, self.progress, self.on_collapse = scalars, progress, on_collapse
        self.selection, self.record, self.prepare = selection, record, prepare
        saved = json.loads(record.read_text()) if start_step and record is not None and record.is_file() else {}
        self.history: list[dict[str, float]] = [e for e in saved.get("history", []) if e["step"] <= start_step]
        self.alarms: list[dict] = [a for a in saved.get("alarms", []) if a["step"] <= start_step]
        self.latest: dict[str, EvalResult] = {}
        self.latest_scores: dict[str, float] = {}
        self.latest_prior: list[float] | None = None
        self.latest_step: int | None = None

    def evaluate(self, model: keras.Model) -> tuple[dict[str, EvalResult], dict[str, float], str | None,
                                                    list[float] | None]:
        """`(accuracy results by set, validator scores, collapse alarm or None, estimated target
        prior or None)`; held-out source accuracy counts as the `source_accuracy` validator (it
        needs no target label)."""
        results = {name: fn(model) for name, fn in self.evaluators.items()}
        scores, alarm, prior = self.validate(model) if self.validate else ({}, None, None)
        if "source" in results:
            scores["source_accuracy"] = results["source"].accuracy
        return results, scores, alarm, None if prior is None else [round(float(p), 6) for p in prior]

    def inference_model(self, ema_model: keras.Model) -> keras.Model:
        """The model an evaluation judges and a run saves: `prepare(ema_model)`, or `ema_model`."""
        return self.prepare(ema_model) if self.prepare is not None else ema_model

    def epoch_logs(self, step: int) -> dict[str, float]:
        """The evaluation at `step` as Keras validation logs: `val_target_accuracy`,
        `val_source_accuracy`, `val_<validator>` (empty when `step` was not evaluated)."""
        if self.latest_step != step:
            return {}
        logs = {f"val_{name}_accuracy": result.accuracy for name, result in self.latest.items()}
        logs.update({f"val_{name}": value for name, value in self.latest_scores.items() if f"val_{name}" not in logs})
        return logs

    def final(self, model: keras.Model, step: int) -> tuple[dict[str, EvalResult], dict[str, float],
                                                            list[float] | None]:
        """`(results, scores, estimated target prior)` at `step`: the last evaluation's when it was
        at `step`, else evaluated now (a resume with no steps left to train)."""
        if self.latest_step == step:
            return self.latest, self.latest_scores, self.latest_prior
        results, scores, _, prior = self.evaluate(model)
        return results, scores, prior

    def on_train_begin(self, logs=None):
        if self.evaluate_start and (self.evaluators or self.validate):
            self._evaluate_and_log(0, self.model.ema.average)  # the model as given, before any `prepare`
            self._save_record()

    def _save_record(self) -> None:
        """Writes `history` and `alarms` to `record` (when given)."""
        if self.record is not None:
            write_json_atomic(self.record, {"history": self.history, "alarms": self.alarms})

    def _evaluate_and_log(self, step: int, model: keras.Model) -> str | None:
        """Evaluates `model` as the one of `step`: logged, printed and kept in `history`;
        returns the collapse alarm or None."""
        self.latest, self.latest_scores, alarm, self.latest_prior = self.evaluate(model)
        self.latest_step = step
        results = {f"eval/{name}_accuracy": result.accuracy for name, result in self.latest.items()}
        results.update({f"validators/{name}": value for name, value in self.latest_scores.items()})
        self.scalars.write(step, results)
        self.history.append({"step": step, **results,
                             **({"estimated_target_prior": self.latest_prior} if self.latest_prior else {})})
        accuracy = "  ".join(f"{name}_accuracy {r.accuracy:.4f}" for name, r in self.latest.items())
        scores = " ".join(f"{name} {value:.3f}" for name, value in self.latest_scores.items())
        self.progress.message(f"step {step}{' (start)' if step == 0 else ''}: {accuracy}"
                              + (f"  | validators: {scores}" if scores else ""))
        return alarm

    def on_train_batch_end(self, batch, logs=None):
        step = batch + 1
        if not (self.evaluators or self.validate) or not (step % self.every == 0 or step == self.total_steps):
            return
        model = self.inference_model(self.model.ema.average)
        alarm = self._evaluate_and_log(step, model)
        if self.selection is not None:
            self.selection.offer(step, self.latest_scores, alarm, model)
        if alarm:
            self.alarms.append({"step": step, "message": alarm})
            self.progress.message(f"warning: collapse alarm at step {step}: {alarm}")
        self._save_record()
        if alarm:
            if self.on_collapse != "warn":
                raise Collapsed(step, alarm, self.on_collapse, logs[WALL_TIME])


def train_loop(trainer: TrainingModel, feed: tf.data.Dataset, *, start_step: int, total_steps: int,
               callbacks: list[keras.callbacks.Callback], wall_time_before: float = 0.0,
               epoch_steps: int | None = None,
               epoch_logs: Callable[[int], dict[str, float]] | None = None) -> dict[str, float]:
    """Runs `trainer`'s train step from `start_step` to `total_steps` on `feed`.

    Callbacks see `on_train_batch_begin(step_index)` and `on_train_batch_end(step_index, logs)`,
    the logs as Python floats, including `wall_time_s` (summed over resumed runs), and every
    `epoch_steps` steps (and at the end) an epoch: `on_epoch_begin(epoch)` before its first step,
    `on_epoch_end(epoch, logs)` after its last, with the mean of its step logs and
    `epoch_logs(step)` (the evaluation's `val_...` values). A callback that sets
    `model.stop_training` ends the run after the current step. Returns the last step's logs.
    """
    epoch_steps = epoch_steps or total_steps
    callback_list = keras.callbacks.CallbackList(callbacks, model=trainer)
    trainer.make_train_function()
    iterator = iter(feed)
    logs: dict[str, float] = {}
    sums: dict[str, float] = {}
    start = time.perf_counter()
    callback_list.on_train_begin()
    for step in range(start_step, total_steps):
        epoch = step // epoch_steps
        if step == start_step or step % epoch_steps == 0:
            callback_list.on_epoch_begin(epoch)
            sums, count = {}, 0
        callback_list.on_train_batch_begin(step)
        outputs = trainer.train_function(iterator)
        logs = {key: float(np.reshape(value, -1)[0]) for key, value in outputs.items()}
        logs[WALL_TIME] = wall_time_before + time.perf_counter() - start
        callback_list.on_train_batch_end(step, logs)
        count += 1
        for key, value in logs.items():
            sums[key] = sums.get(key, 0.0) + value
        done = step + 1
        if done % epoch_steps == 0 or done == total_steps or trainer.stop_training:
            means = {key: value / count for key, value in sums.items()}
            callback_list.on_epoch_end(epoch, {**means, WALL_TIME: logs[WALL_TIME],
                                               **(epoch_logs(done) if epoch_logs else {})})
        if trainer.stop_training:
            break
    callback_list.on_train_end(logs)
    return logs
