"""Train-step figures, measured side by side in one run.

    python bench/train_step.py [--model cnn-small] [--batch-size 64] [--uratio 3] [--steps 20]
                               [--folder-steps 200] [--folder-px 256] [--folders-only]

Prints:
  * ms/step of the AdaMatch step and of a plain supervised step on the same total batch (all
    images of AdaMatch's joint pass), and their ratio (the adaptation overhead; goal <= 1.6x);
  * the AdaMatch step with XLA on vs off;
  * the feed's headroom: feed images/s / step images/s (goal >= 3: the step never starves);
  * achieved GFLOP/s of the AdaMatch step (model FLOPs counted from the graph, x3 for the
    backward pass) as a fraction of this machine's dense float32 matmul GFLOP/s.
Steps run on one fixed batch so the feed's cost is measured separately. Then, on image folders
(digits -> digits-m written as JPEG files of `--folder-px` pixels, as a user's photos would be):
  * AdaMatch training steps/s through the real feed at the CLI's default batch, with the folders'
    preprocessed images kept in memory (the default) vs decoded and resized every epoch.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipelines import builtin  # noqa: E402
from pipelines.feeds import FeedSpec, make_feed  # noqa: E402
from pipelines.sources import open_source  # noqa: E402
from tfuda.engine.trainer import TrainingModel, make_optimizer  # noqa: E402
from tfuda.methods import AdaMatch, SourceOnly  # noqa: E402
from tfuda.models import build_model  # noqa: E402

SIZE = 32


def ms_per_step(method, feed: tf.data.Dataset, model_name: str, steps: int, xla: bool,
                warmup: int = 3) -> tuple[float, float]:
    """`(wall ms, process CPU ms)` per train step of `method` on `feed` (after `warmup` steps); the
    CPU time counts every thread of this process, the feed's included."""
    keras.utils.set_random_seed(0)
    trainer = TrainingModel(build_model(model_name, 10, SIZE), method, total_steps=1000)
    trainer.compile(optimizer=make_optimizer(method.learning_rate(0.03, 1000)), jit_compile=xla)
    trainer.make_train_function()
    iterator = iter(feed)
    for _ in range(warmup):
        trainer.train_function(iterator)["loss"].numpy()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        logs = trainer.train_function(iterator)
    logs["loss"].numpy()
    return (time.perf_counter() - start) / steps * 1000, (time.process_time() - cpu) / steps * 1000


def forward_flops_per_image(model_name: str) -> float:
    """Float ops of one forward pass, counted by the TF profiler on the traced graph."""
    model = build_model(model_name, 10, SIZE)
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return float(tf.compat.v1.profiler.profile(fn.graph, options=options).total_float_ops)


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    mm = tf.function(lambda: tf.matmul(a, b))
    mm().numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        out = mm()
    out.numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def write_folder(spec: str, root: Path, px: int) -> str:
    """Writes a built-in data set as class folders of `px` x `px` JPEG files; returns the folder."""
    images, labels = builtin.load(spec, "train")
    resized = tf.cast(tf.image.resize(tf.image.grayscale_to_rgb(tf.constant(images)) if images.shape[-1] == 1
                                      else tf.constant(images), [px, px]), tf.uint8).numpy()
    for i, (image, label) in enumerate(zip(resized, labels)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.jpg").write_bytes(tf.io.encode_jpeg(image, quality=90).numpy())
    return str(root)


def folder_step(source: str, target: str, steps: int, kept: bool) -> tuple[float, float]:
    """`(wall ms, CPU ms)` per AdaMatch step through the real feed from image folders (after 20
    warm-up steps), the folders' preprocessed images `kept` in memory or decoded every epoch."""
    import pipelines.sources
    from tfuda.budget import BATCH

    budget = pipelines.sources.MEMORY_BUDGET
    pipelines.sources.MEMORY_BUDGET = budget if kept else 0
    try:
        spec = FeedSpec(BATCH, AdaMatch.default_uratio, SIZE, AdaMatch.source_views,
                        AdaMatch.target_views, seed=0)
        feed = make_feed(open_source(source), open_source(target), spec)
        return ms_per_step(AdaMatch(), feed, "cnn-small", steps, xla=False, warmup=20)
    finally:
        pipelines.sources.MEMORY_BUDGET = budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn-small")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--uratio", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--folder-steps", type=int, default=200, help="steps timed per folder-feed setting")
    parser.add_argument("--folder-px", type=int, default=256, help="side of the JPEG files of the folder pair")
    parser.add_argument("--folders-only", action="store_true", help="only the image-folder figures")
    args = parser.parse_args()
    if not args.folders_only:
        step_figures(args)
    folder_figures(args)


def step_figures(args: argparse.Namespace) -> None:
    """The fixed-batch step figures (see the module docstring)."""
    b, u = args.batch_size, args.batch_size * args.uratio
    views = ("weak", "strong")
    spec = FeedSpec(b, args.uratio, SIZE, views, views, seed=0)
    source, target = open_source("digits"), open_source("digits-m")
    feed = iter(make_feed(source, target, spec))
    batch = next(feed)

    fixed = tf.data.Dataset.from_tensors(batch).repeat()
    adamatch = ms_per_step(AdaMatch(), fixed, args.model, args.steps, xla=False)[0]
    adamatch_xla = ms_per_step(AdaMatch(), fixed, args.model, args.steps, xla=True)[0]
    joint = 2 * b + 2 * u
    all_images = tf.concat([batch["source"]["weak"], batch["source"]["strong"],
                            batch["target"]["weak"], batch["target"]["strong"]], 0)
    labels = tf.concat([batch["source"]["labels"]] * 2 + [tf.zeros([2 * u], tf.int64)], 0)
    supervised_batch = {"seed": batch["seed"], "source": {"weak": all_images, "labels": labels}}
    supervised = ms_per_step(SourceOnly(), tf.data.Dataset.from_tensors(supervised_batch).repeat(), args.model,
                             args.steps, xla=False)[0]

    next(feed)
    start = time.perf_counter()
    for _ in range(args.steps):
        next(feed)
    feed_rate = args.steps * (b + u) / (time.perf_counter() - start)
    step_rate = (b + u) / (adamatch / 1000)

    flops = forward_flops_per_image(args.model) * 3 * (joint + 2 * b)
    achieved = flops / (adamatch / 1000) / 1e9
    peak = matmul_gflops()

    print(f"{args.model}, {b} source + {u} target images/step at {SIZE}x{SIZE}, {os.cpu_count()} CPU cores")
    print(f"  AdaMatch step (XLA off):              {adamatch:8.1f} ms")
    print(f"  supervised step, same {joint} images:   {supervised:8.1f} ms")
    print(f"  adaptation overhead ratio:            {adamatch / supervised:8.2f}x  (goal <= 1.6x)")
    print(f"  AdaMatch step (XLA on):               {adamatch_xla:8.1f} ms  ({adamatch_xla / adamatch:.2f}x XLA off)")
    print(f"  feed {feed_rate:.0f} images/s vs step {step_rate:.0f} images/s: headroom {feed_rate / step_rate:.1f}x (goal >= 3)")
    print(f"  step compute {flops / 1e9:.2f} GFLOP -> {achieved:.1f} GFLOP/s = "
          f"{achieved / peak:.1%} of dense matmul {peak:.0f} GFLOP/s measured now")



def folder_figures(args: argparse.Namespace) -> None:
    """Steps through the real feed from image folders, kept in memory vs decoded every epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        source_dir = write_folder("digits", Path(tmp) / "source", args.folder_px)
        target_dir = write_folder("digits-m", Path(tmp) / "target", args.folder_px)
        kept = folder_step(source_dir, target_dir, args.folder_steps, kept=True)
        decoded = folder_step(source_dir, target_dir, args.folder_steps, kept=False)
    print(f"image folders ({args.folder_px}x{args.folder_px} JPEG), AdaMatch at the CLI's default batch, "
          f"{args.folder_steps} steps each, wall and process CPU time per step:")
    print(f"  preprocessed images kept in memory:   {kept[0]:7.1f} ms, CPU {kept[1]:7.1f} ms")
    print(f"  decoded and resized every epoch:      {decoded[0]:7.1f} ms, CPU {decoded[1]:7.1f} ms  "
          f"(steps/s kept / decoded: {decoded[0] / kept[0]:.2f}x; CPU per step: {kept[1] / decoded[1]:.2f}x)")

if __name__ == "__main__":
    main()
