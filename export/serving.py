"""Serving graphs of a trained classifier, written with `keras.export.ExportArchive`.

The TF Serving SavedModel has these signatures (input key `images` in each):

  * `serving_default`: uint8 `[batch, height, width, channels]`, any height/width, 1, 3 (or 4)
    channels; the training-time preprocessing (RGB, resize-with-pad) runs inside the graph.
  * `serving_preprocessed`: float32 `[batch, S, S, 3]` with values 0..255, already preprocessed.
  * `class_names`: no input; returns `class_names`, string `[K]`, read from
    `assets/class_names.txt` (also callable as `loaded.class_names()`).

Both image signatures return `probabilities` float32 `[batch, K]`, `classes` int64 `[batch]`
(top-1 index into the class names) and `logits` float32 `[batch, K]`.

The device graph (source of the TFLite and ONNX files) has one signature, `serving_default`:
uint8 `[batch, S, S, 3]` at the model size, cast inside, same outputs; no resize op, so it
converts with TFLite builtins only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from pipelines.transforms import preprocess

INPUT_KEY = "images"
OUTPUT_KEYS = ("probabilities", "classes", "logits")
CLASS_NAMES_ASSET = "class_names.txt"


def _outputs(model: keras.Model, images: tf.Tensor) -> dict[str, tf.Tensor]:
    logits = tf.cast(model(images, training=False), tf.float32)
    return {
        "probabilities": tf.nn.softmax(logits),
        "classes": tf.argmax(logits, axis=-1, output_type=tf.int64),
        "logits": logits,
    }


def image_size_of(model: keras.Model) -> int:
    """The model's static input side S (inputs are `[B, S, S, 3]`)."""
    return int(model.input_shape[1])


def write_serving_savedmodel(model: keras.Model, class_names: list[str], path: Path) -> None:
    """Writes the TF Serving SavedModel (see module docstring) to `path` (must not exist)."""
    size = image_size_of(model)
    with tempfile.TemporaryDirectory() as tmp:
        names_file = Path(tmp) / CLASS_NAMES_ASSET  # copied into assets/ under this name
        names_file.write_text("\n".join(class_names) + "\n")
        _write_serving_archive(model, class_names, size, names_file, path)


def _write_serving_archive(model, class_names, size, names_file, path) -> None:
    table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            str(names_file), tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string, tf.lookup.TextFileIndex.WHOLE_LINE),
        default_value="")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(table)
    archive.add_endpoint(
        "serving_default",
        lambda images: _outputs(model, tf.cast(preprocess(images, size), tf.float32)),
        input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8, name=INPUT_KEY)])
    archive.add_endpoint(
        "serving_preprocessed",
        lambda images: _outputs(model, images),
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name=INPUT_KEY)])
    archive.add_endpoint(
        "class_names",
        lambda: {"class_names": table.lookup(tf.range(len(class_names), dtype=tf.int64))},
        input_signature=[])
    archive.write_out(str(path), verbose=False)


def write_device_savedmodel(model: keras.Model, path: Path) -> None:
    """Writes the fixed-size uint8 SavedModel that TFLite and ONNX are converted from."""
    size = image_size_of(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        lambda images: _outputs(model, tf.cast(images, tf.float32)),
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name=INPUT_KEY)])
    archive.write_out(str(path), verbose=False)
