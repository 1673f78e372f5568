"""The run directory: the contract between training, prediction, reporting and export.

    RUN/config.json         resolved Config
    RUN/class_names.json    ["0", "1", ...] in label order
    RUN/checkpoints/        tf.train.CheckpointManager files
    RUN/logs/               TensorBoard event files
    RUN/evaluations.json    the evaluations and collapse alarms so far (kept across --resume)
    RUN/metrics.json        status, steps, accuracies, wall time, config, environment
    RUN/model.keras         the final EMA model (float32 [B, S, S, 3] 0..255 -> logits)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipelines.errors import UserError


class RunDir:
    """Paths and readers of one run directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    config_file = property(lambda self: self.path / "config.json")
    class_names_file = property(lambda self: self.path / "class_names.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    logs = property(lambda self: self.path / "logs")
    metrics_file = property(lambda self: self.path / "metrics.json")
    evaluations_file = property(lambda self: self.path / "evaluations.json")
    model_file = property(lambda self: self.path / "model.keras")

    def read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"run directory '{self.path}' has no {path.name}: is it a tfuda run?") from None
        except ValueError as err:
            raise UserError(f"'{path}' is not valid JSON ({err})") from None

    def config(self) -> dict[str, Any]:
        return self.read_json(self.config_file)

    def class_names(self) -> list[str]:
        return self.read_json(self.class_names_file)

    def metrics(self) -> dict[str, Any]:
        return self.read_json(self.metrics_file)

    def check_model(self) -> None:
        """Raises UserError unless this is a run directory with a finished model."""
        if not self.path.is_dir():
            raise UserError(f"--run '{self.path}' is not a directory: give a run directory made by `python -m tfuda.train`")
        if not self.model_file.is_file():
            raise UserError(
                f"run directory '{self.path}' has no model.keras: training did not finish "
                "(resume it with `python -m tfuda.train --out RUN --resume`)")

    def load_model(self):
        """The final EMA model as a compiled-free Keras model."""
        import keras

        import tfuda.models.applications  # noqa: F401  (registers custom layers)

        self.check_model()
        return keras.saving.load_model(self.model_file, compile=False)

    def image_size(self) -> int:
        return int(self.config()["image_size"])
