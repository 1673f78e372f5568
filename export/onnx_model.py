"""ONNX conversion with tf2onnx from the device SavedModel, and its onnxruntime runner.

The ONNX graph takes uint8 `images` `[batch, S, S, 3]` (dynamic batch) and returns
`probabilities`, `classes`, `logits`, like the TFLite files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

OPSET = 17


def convert(savedmodel_dir: Path, output: Path, opset: int = OPSET) -> None:
    """Converts the `serving_default` signature of the device SavedModel to `output`."""
    import tf2onnx

    loaded = tf.saved_model.load(str(savedmodel_dir))
    signature = loaded.signatures["serving_default"]
    spec = signature.structured_input_signature[1]["images"]
    function = tf.function(lambda images: signature(images=images))
    tf2onnx.convert.from_function(
        function, input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name="images")],
        opset=opset, output_path=str(output))


class ONNXRunner:
    """Runs a `.onnx` file with onnxruntime on the CPU (uint8 `[B, S, S, 3]` -> probabilities)."""

    def __init__(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = next(name for name in outputs if "probabilities" in name)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {self.input: np.asarray(images, np.uint8)})[0]
