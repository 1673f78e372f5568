"""Images/s of the AdaMatch feed: tf.data graph mode vs the per-image Python reference.

    python bench/pipeline.py [--steps 30] [--batch-size 64] [--uratio 3]

The feed makes, per step, 64 source (`digits`, 8x8 gray) + 192 target (`digits-m`, 32x32 RGB)
images, each as a weak and a strong view, at 32x32. The reference does the same work per image
in a Python loop, like the Keras AdaMatch example's `PyDataset`: PIL resize-with-pad, NumPy
channel tiling, then the same weak and strong augmentations called on each image. Both run in
this one process on the same data; the ratio is what to read, since machines here are noisy.
Also prints the device placement (uint8 feed + augmentation inside a `tf.function`).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines import builtin  # noqa: E402
from pipelines.augment import Augment  # noqa: E402
from pipelines.feeds import FeedSpec, apply_views, make_feed  # noqa: E402
from pipelines.sources import open_source  # noqa: E402

SIZE = 32


def reference_resize_with_pad(image: np.ndarray, size: int) -> np.ndarray:
    """PIL resize keeping aspect ratio + zero padding + NumPy gray->RGB tiling, one image."""
    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    resized = np.asarray(pil.resize((nw, nh), Image.BILINEAR))
    if resized.ndim == 2:
        resized = np.repeat(resized[..., None], 3, axis=-1)
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = resized[..., :3]
    return out


def reference_step(policy: Augment, source, target, rng, batch: int, uratio: int, step: int):
    """One step of the per-image reference: every image prepared and augmented alone."""
    out = {}
    for name, (images, labels), count in (("source", source, batch), ("target", target, batch * uratio)):
        index = rng.integers(0, len(images), count)
        weak, strong = [], []
        for j, i in enumerate(index):
            one = reference_resize_with_pad(images[i], SIZE)[None]
            seed = tf.constant([step, j], tf.int64)
            weak.append(policy.weak(one, seed).numpy()[0])
            strong.append(policy.strong(one, seed).numpy()[0])
        out[name] = (np.stack(weak), np.stack(strong), labels[index])
    return out


def images_per_second(fn, steps: int, per_step: int) -> float:
    fn()  # warm-up (tracing, buffers)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return steps * per_step / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--reference-steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--uratio", type=int, default=3)
    args = parser.parse_args()
    per_step = args.batch_size * (1 + args.uratio)
    views = ("weak", "strong")
    spec = FeedSpec(args.batch_size, args.uratio, SIZE, views, views, seed=0)
    source, target = open_source("digits"), open_source("digits-m")

    feed = iter(make_feed(source, target, spec))
    graph = images_per_second(lambda: next(feed), args.steps, per_step)

    device_spec = FeedSpec(**{**spec.__dict__, "on_device": True})
    raw = iter(make_feed(source, target, device_spec))
    augment = tf.function(lambda b: apply_views(b, device_spec))
    device = images_per_second(lambda: tf.nest.map_structure(lambda t: t.numpy(), augment(next(raw))),
                               args.steps, per_step)
    raw_only = images_per_second(lambda: next(raw), args.steps, per_step)

    rng = np.random.default_rng(0)
    policy = Augment()
    src, tgt = builtin.load("digits", "train"), builtin.load("digits-m", "train")
    counter = iter(range(10**9))
    reference = images_per_second(
        lambda: reference_step(policy, src, tgt, rng, args.batch_size, args.uratio, next(counter)),
        args.reference_steps, per_step)

    print(f"AdaMatch feed, {args.batch_size} source + {args.batch_size * args.uratio} target images/step, "
          f"weak + strong views, {SIZE}x{SIZE}, {os.cpu_count()} CPU cores")
    print(f"  tf.data graph mode (augment in tf.data):   {graph:10.0f} images/s")
    print(f"  per-image Python reference (PIL + NumPy):  {reference:10.0f} images/s")
    print(f"  ratio tf.data / reference:                 {graph / reference:10.1f}x  (goal >= 10x)")
    print(f"  device placement: uint8 feed alone         {raw_only:10.0f} images/s")
    print(f"  device placement: feed + tf.function aug   {device:10.0f} images/s "
          f"({device / graph:.2f}x the tf.data placement on this CPU)")


if __name__ == "__main__":
    main()
