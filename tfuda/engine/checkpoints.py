"""Checkpoints of a run: model, EMA, optimizer (and its step), method layers, wall time."""

from __future__ import annotations

import tensorflow as tf

from tfuda.engine.trainer import TrainingModel

KEEP = 3


class Checkpoints:
    """`tf.train.CheckpointManager` over everything needed to resume a run exactly.

    TensorFlow writes a checkpoint's files first and then atomically replaces the `checkpoint`
    index file, so an interrupted save never replaces the last good checkpoint.
    The data position needs no state: the feed is rebuilt for the restored step.
    """

    def __init__(self, trainer: TrainingModel, directory: str, keep: int = KEEP):
        self.wall_time = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="wall_time")
        extra = {f"method_{i}": layer for i, layer in enumerate(trainer.method.extra_layers)}
        self.checkpoint = tf.train.Checkpoint(
            classifier=trainer.classifier, ema=trainer.ema.average,
            optimizer=trainer.optimizer, wall_time=self.wall_time, **extra)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)
        self.trainer = trainer

    def restore_latest(self, directory: str | None = None) -> int:
        """Restores the newest checkpoint, if any; returns the restored step (0 if none).

        Args:
          directory: where to read it from (default: this manager's own directory). Another
            worker of a multi-worker run reads the chief's checkpoints and saves to its own.
        """
        path = self.manager.latest_checkpoint if directory is None else tf.train.latest_checkpoint(directory)
        if path is None:
            return 0
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return int(self.trainer.optimizer.iterations.numpy())

    def save(self, step: int, wall_time: float) -> str:
        self.wall_time.assign(wall_time)
        return self.manager.save(checkpoint_number=step)

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint
