"""Target accuracy of finished runs on `digits-c`, per corruption, and how their predictions spread.

    python bench/corruptions.py RUN_DIR_OR_GLOB... [--out bench/out/corruptions.md]

`digits-c` gives each digit one of four corruptions (`pipelines.builtin.CORRUPTIONS`,
`pipelines.builtin.corruptions`). For each finished run whose target is `digits-c` (the oracle
included) prints its accuracy on `digits-c:test`, its accuracy on each corruption's images, and
how many test images it predicts for each class (the true counts are nearly even): where a
method loses accuracy, and whether its predictions pile onto some classes there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from accuracy import publish, run_dirs, run_quietly
from tfuda.environment import cpu_model


def main() -> None:
    import keras

    from pipelines.builtin import CORRUPTIONS, corruptions
    from pipelines.sources import open_source
    from tfuda.inference import predict_source

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories or glob patterns")
    parser.add_argument("--out", default="bench/out/corruptions.md")
    args = parser.parse_args()
    runs = [run for run in run_dirs(args.runs) if json.loads((run / "config.json").read_text())["target"] == "digits-c"]
    if not runs:
        parser.error("no finished run with target digits-c among the given runs")
    kinds = np.array(corruptions("test"))
    test = open_source("digits-c:test")
    lines = [f"{len(runs)} runs on digits-c:test, {cpu_model()}", "",
             "| run | accuracy | " + " | ".join(CORRUPTIONS) + " | predicted per class | of which noisy |",
             "|---|---|" + "---|" * len(CORRUPTIONS) + "---|---|"]
    for run in runs:
        model = keras.models.load_model(run / "model.keras", compile=False)
        probs, labels = predict_source(model, test, int(model.input_shape[1]))
        right = probs.argmax(1) == labels
        per_kind = " | ".join(f"{right[kinds == kind].mean():.3f}" for kind in CORRUPTIONS)
        counts = np.bincount(probs.argmax(1), minlength=probs.shape[1])
        noisy = np.bincount(probs.argmax(1)[kinds == "gaussian_noise"], minlength=probs.shape[1])
        lines.append(f"| {run.name} | {right.mean():.4f} | {per_kind} | {' '.join(map(str, counts))} "
                     f"| {' '.join(map(str, noisy))} |")
    publish(lines, Path(args.out))


if __name__ == "__main__":
    run_quietly(main)
