"""Adapt a `.keras` classifier you already have to new images, without its training data (TENT).

    python examples/source_free_keras_file.py [--steps 300] [--work /tmp/tfuda-source-free]

The situation: a classifier is in production as a `.keras` file, the images it now sees look
different, and its training data is gone. Here the "production model" is a small Keras CNN fitted
with plain `model.fit` on the built-in digits (black on white) and saved; the new images are
digits-m (coloured digits on photo patches). TENT adapts only the model's batch-norm scales and
statistics, from the new images alone; the script prints the accuracy before and after on
labeled new images kept aside (labels a real deployment may not have: only to show the effect),
and exports the adapted model. The command-line equivalent is
`tfuda train --method tent --init model.keras --class-names names.txt --target new_images/`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

import export
import tfuda
from pipelines import builtin


def production_model(path: Path, epochs: int) -> Path:
    """A classifier trained with ordinary Keras on the old domain, saved as `.keras`."""
    images, labels = builtin.load("digits", "train")
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for width in (32, 64):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name="production")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rgb = tf.image.resize(tf.image.grayscale_to_rgb(tf.constant(images, tf.float32)), [32, 32])
    model.fit(rgb, labels, epochs=epochs, batch_size=64, verbose=0)
    model.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the stand-in production model")
    parser.add_argument("--work", help="where the model, run and exports go (default: a temporary dir)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="tfuda-source-free-"))
    keras.utils.set_random_seed(0)
    path = production_model(work / "model.keras", args.epochs)

    names = list(builtin.CLASS_NAMES)
    model = keras.saving.load_model(path)
    before = tfuda.evaluate(model, "digits-m:test", class_names=names).accuracy
    result = tfuda.adapt(model, target="digits-m", method=tfuda.TENT(), class_names=names, steps=args.steps,
                         batch_size=16, eval_every=max(1, args.steps // 2), run_dir=work / "run")
    print(f"accuracy on the new images: {before:.3f} before, {result.target_accuracy:.3f} after TENT; "
          f"label-free validators {', '.join(f'{k} {v:.3f}' for k, v in result.validators.items())}")
    report = export.export_model(result.model, result.class_names, work / "exports", eval_data="digits-m:test",
                                 quantize=["float32"])
    print(f"exported to {work / 'exports'}: {'verified' if report['passed'] else 'FAILED'}")


if __name__ == "__main__":
    main()
