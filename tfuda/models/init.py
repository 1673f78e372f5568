"""`--init`: start from a model the user already has — a tfuda run directory or any `.keras` classifier.

A tfuda model (made by `build_model`) is used as it is. Any other Keras model (functional or
Sequential; images float32 `[B, S, S, 3]` with values 0..255 -> logits or probabilities) is
brought into tfuda's form by `tfuda.models.foreign.as_classifier`: its **head** is its last
`Dense` layer, whose output may only be followed by activation layers (`Softmax`,
`Activation`); the head's input is the **embedding** (the penultimate features).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from pipelines.errors import UserError
from tfuda.models.common import num_classes_of
from tfuda.models.foreign import as_classifier
from tfuda.rundir import RunDir


def _model_file(path: str) -> Path:
    """The `.keras` file of a run directory or a model path; UserError if there is none."""
    if os.path.isdir(path):
        run = RunDir(path)
        run.check_model()
        return run.model_file
    if not os.path.isfile(path) or not path.endswith(".keras"):
        raise UserError(f"--init '{path}' is neither a run directory nor a .keras model file")
    return Path(path)


def init_class_names(path: str, class_names_file: str | None = None) -> list[str] | None:
    """The class names of an `--init` model, without loading it: `--class-names`, else the run's."""
    _model_file(path)
    if class_names_file is not None:
        return _read_class_names(class_names_file)
    if os.path.isdir(path):
        return RunDir(path).class_names()
    return None


def load_init(path: str, class_names_file: str | None = None) -> tuple[keras.Model, list[str] | None]:
    """Loads an `--init` model in tfuda's form and its class names.

    Args:
      path: a run directory (its `model.keras` and `class_names.json`) or a `.keras` file.
      class_names_file: text file with one class name per line, in output order; required for a
        foreign model unless the run's data names the classes.

    Returns:
      `(model, class names or None when neither the run nor the file names them)`.

    Raises:
      UserError: not a Keras model, no head to be found, or class names that do not fit.
    """
    import tfuda.models.applications  # noqa: F401  (registers tfuda's custom layers)

    file = _model_file(path)
    try:
        model = keras.saving.load_model(file, compile=False)
    except Exception as err:  # Keras raises many types for a file it cannot read
        raise UserError(f"--init '{path}' is not a Keras model it can load ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})") from None
    names = init_class_names(path, class_names_file)
    model.trainable = True  # every layer, also in models saved frozen (runs of earlier tfuda); methods choose
    model = as_classifier(model, origin=f"--init '{path}'")
    units = num_classes_of(model)
    if names is not None and len(names) != units:
        raise UserError(f"--init '{path}' outputs {units} classes but the class names list {len(names)}: "
                        "give --class-names with one name per output, in output order")
    return model, names


def _read_class_names(path: str) -> list[str]:
    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as err:
        raise UserError(f"--class-names '{path}' cannot be read: {err.strerror or err}") from None
    if not names:
        raise UserError(f"--class-names '{path}' is empty: one class name per line, in output order")
    return names
