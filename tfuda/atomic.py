"""Atomic writes for training and export (see `pipelines.atomic`), and the Keras model file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.atomic import copy_atomic, replace_with, write_bytes_atomic, write_json_atomic, write_text_atomic
from pipelines.errors import UserError

if TYPE_CHECKING:
    import keras

__all__ = ["copy_atomic", "save_model_atomic", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


def save_model_atomic(model: "keras.Model", path: Path) -> None:
    """Saves a `.keras` file atomically (a temporary sibling, flushed, renamed into place).

    Raises:
      UserError: the file cannot be written (names the path).
    """
    try:
        replace_with(path, lambda tmp: model.save(tmp))
    except OSError as err:
        raise UserError(f"cannot write {path}: {err}") from None
