"""TFLite conversion (float32, float16, int8) from the device SavedModel, and its runtime.

Input of every file: uint8 `[batch, S, S, 3]` raw pixels (preprocessed to the model size: RGB,
resize-with-pad), the signature `serving_default` with input `images` and outputs
`probabilities`, `classes`, `logits`. The int8 file quantizes weights and activations with
ranges calibrated on the target domain's images; its input stays raw uint8 pixels (a cast
feeds the quantized body), so no input scale/zero-point is needed on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import tensorflow as tf

from pipelines.errors import UserError

PRECISIONS = ("float32", "float16", "int8")
MIN_BYTES = 4096
"""Smaller files carry no weights (a plain tf.saved_model.save source gives ~21 KiB of graph)."""


def convert(savedmodel_dir: Path, precision: str,
            calibration: Callable[[], Iterable[np.ndarray]] | None = None) -> bytes:
    """Converts the device SavedModel to a TFLite flatbuffer.

    Args:
      savedmodel_dir: written by `export.serving.write_device_savedmodel`.
      precision: `float32`, `float16` (weights) or `int8` (weights and activations).
      calibration: for int8, yields uint8 `[1, S, S, 3]` batches of target-domain images.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel_dir), signature_keys=["serving_default"])
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        if calibration is None:
            raise ValueError("int8 conversion needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([batch] for batch in calibration())
        # The uint8 -> float cast at the input stays a builtin op; everything after it is int8.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
    elif precision != "float32":
        raise UserError(f"unknown TFLite precision '{precision}'; choose from {', '.join(PRECISIONS)}")
    return converter.convert()


class TFLiteRunner:
    """Runs a `.tflite` file with `ai_edge_litert` (uint8 `[B, S, S, 3]` -> probabilities)."""

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path))
        self.runner = self.interpreter.get_signature_runner("serving_default")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.runner(images=np.ascontiguousarray(images, np.uint8))["probabilities"]
