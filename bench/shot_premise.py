"""Does SHOT's premise hold for a model and a target? Its clustering labels against the model's predictions.

    python bench/shot_premise.py MODEL [MODEL ...] [--target digits-m] [--max-images 4096] [--seed 0]

SHOT (`tfuda.methods.shot`) trains a model toward the labels of a weighted k-means of its target
features; it can only help where those labels are right more often than the model's own
predictions. For each MODEL (a run directory or a `.keras` file, as `--init` takes) prints, on
up to `--max-images` images of the *labeled* `--target` (the same seeded sample SHOT clusters):
the accuracy of the model's predictions, of SHOT's labels (soft centroids then one hard round,
as it trains with), and of the soft centroids alone. Target labels are read here only to
measure; SHOT never sees them.
"""

from __future__ import annotations

import argparse

import numpy as np
import tensorflow as tf

from accuracy import run_quietly
from tfuda.environment import cpu_model


def premise(model_path: str, target: str, max_images: int, seed: int) -> dict[str, float]:
    """{"predictions", "shot labels", "soft centroids": accuracy on the labeled target sample}."""
    from pipelines.feeds import first_images
    from pipelines.sources import open_source
    from tfuda.methods.shot import nearest_centroid, shot_centroids
    from tfuda.models.init import load_init
    from tfuda.validate.sample import model_outputs

    model, _ = load_init(model_path)
    images, labels = first_images(open_source(target), max_images, int(model.input_shape[1]), shuffle_seed=seed)
    probs, features = model_outputs(model, images)
    result = {"predictions": float(np.mean(probs.argmax(1) == labels))}
    for name, rounds in (("shot labels", 1), ("soft centroids", 0)):
        centroids, valid = shot_centroids(tf.constant(features), tf.constant(probs), rounds)
        result[name] = float(np.mean(nearest_centroid(tf.constant(features), centroids, valid).numpy() == labels))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="run directories or .keras files")
    parser.add_argument("--target", default="digits-m", help="a labeled target (its train split is what SHOT sees)")
    parser.add_argument("--max-images", type=int, default=4096, help="as --method-arg max_images")
    parser.add_argument("--seed", type=int, default=0, help="the run's --seed (fixes the sample)")
    args = parser.parse_args()
    print(f"SHOT's premise on {args.target} (up to {args.max_images} images, seed {args.seed}), {cpu_model()}\n")
    print("| model | predictions | SHOT labels | soft centroids |\n|---|---|---|---|")
    for path in args.models:
        r = premise(path, args.target, args.max_images, args.seed)
        print(f"| {path} | {r['predictions']:.3f} | {r['shot labels']:.3f} | {r['soft centroids']:.3f} |", flush=True)


if __name__ == "__main__":
    run_quietly(main)
