"""Adapt your own Keras model with your own in-memory data, then export it — the Python API.

    python examples/adapt_sequential.py [--steps 400] [--out /tmp/tfuda-example]

The source domain is scikit-learn's 8x8 handwritten digits in black ink on white; the target is
the other half of them in ink of a random dark colour on a random light colour, with noise —
a stand-in for your labeled data set and the differently-looking images you deploy on. Both
are plain NumPy arrays wrapped in `tf.data.Dataset`s, and the model is an ordinary
`keras.Sequential`: nothing here is specific to the built-in demo data. At the default 400
steps, source-only training reaches about 0.19 on the target test images (the collapse alarm
fires) and AdaMatch about 0.94 (seed 0; 35 s of training on an Intel Xeon, 2 cores, while other
jobs shared them).
"""

from __future__ import annotations

import argparse
import tempfile

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

import export
import tfuda


def make_domains(seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """`(source, target train, target test)`, each `(uint8 images [N, 8, 8, 3], int labels [N])`:
    the source is black ink on white, the target ink of a random dark colour on a random light
    colour, with noise; half of the digits each, the target split 2:1 into train and test."""
    digits = load_digits()
    ink = digits.images[..., None] / 16  # [N, 8, 8, 1], 1 = full ink
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ink))
    source, target = order[: len(order) // 2], order[len(order) // 2:]
    white = np.full((len(source), 1, 1, 3), 255.0)
    ground = rng.uniform(120, 255, (len(target), 1, 1, 3))
    colour = rng.uniform(0, 100, (len(target), 1, 1, 3))
    images = [white * (1 - ink[source]),
              ground * (1 - ink[target]) + colour * ink[target] + rng.normal(0, 10, (len(target), 8, 8, 3))]
    (xs, xt), (ys, yt) = [np.clip(x, 0, 255).astype(np.uint8) for x in images], (digits.target[source],
                                                                                   digits.target[target])
    split = len(target) * 2 // 3
    return (xs, ys), (xt[:split], yt[:split]), (xt[split:], yt[split:])


def make_model(num_classes: int = 10) -> keras.Model:
    """A small CNN of your own: images float32 [B, 16, 16, 3] with values 0..255 -> logits."""
    layers = keras.layers
    blocks = []
    for width in (32, 64, 128):
        blocks += [layers.Conv2D(width, 3, padding="same", use_bias=False), layers.BatchNormalization(),
                   layers.ReLU()] + ([layers.MaxPooling2D()] if width < 128 else [])
    return keras.Sequential([
        keras.Input((16, 16, 3)),
        layers.Rescaling(1 / 127.5, offset=-1),
        *blocks,
        layers.GlobalAveragePooling2D(name="features"),
        layers.Dense(num_classes),
    ], name="my_cnn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", help="export directory (default: a temporary one)")
    args = parser.parse_args()

    (xs, ys), (xt, _), (x_test, y_test) = make_domains()
    source = tf.data.Dataset.from_tensor_slices((xs, ys))  # labeled
    target = tf.data.Dataset.from_tensor_slices(xt)  # unlabeled: the target labels are never used
    target_test = tf.data.Dataset.from_tensor_slices((x_test, y_test))  # only to report accuracy
    class_names = [str(k) for k in range(10)]

    keras.utils.set_random_seed(0)
    model = make_model()
    before = tfuda.evaluate(model, target_test, class_names=class_names).accuracy
    result = tfuda.adapt(model, source, target, method=tfuda.AdaMatch(tau=0.9), class_names=class_names,
                         embedding="features", eval_target=target_test, steps=args.steps, batch_size=16,
                         eval_every=max(1, args.steps // 2))
    after = tfuda.evaluate(result.model, target_test, class_names=class_names).accuracy
    print(f"target accuracy: untrained {before:.3f} -> adapted {after:.3f}; "
          f"validators {', '.join(f'{k} {v:.3f}' for k, v in result.validators.items())}; "
          f"collapse alarms: {len(result.alarms)}")

    out = args.out or tempfile.mkdtemp(prefix="tfuda-example-")
    report = export.export_model(result.model, class_names, out, eval_data=target_test,
                                 formats=["savedmodel", "tflite", "onnx"], quantize=["float32"])
    print(f"exported to {out}: {'verified' if report['passed'] else 'FAILED'}")


if __name__ == "__main__":
    main()
