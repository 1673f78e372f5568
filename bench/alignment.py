"""AdaMatch's distribution alignment: the official running statistics against the current batch's means.

    python bench/alignment.py [--seeds 0,1,2] [--steps 1200] [--batch-size 8] [--out bench/out/alignment]

Trains AdaMatch on digits -> digits-m with `--method-arg alignment=running` (the default: an EMA
of the source mean prediction and the mean of the last 128 target batch means, as in the
official code) and `alignment=batch` (this step's batch means), for each seed, with one sweep
(`python -m tfuda.sweep`; finished runs in `--out` are reused). Prints target accuracy on
`digits-m:test` per seed, the mean and spread per variant, and the CPU it ran on. Small
unlabeled batches make batch means noisy, which is what the running statistics address, so the
default budget is the quick start's (batch 8 + 24 unlabeled, 1200 steps).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from accuracy import cpu_model

VARIANTS = ("running", "batch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default=f"bench/out/alignment-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    (out / "sweep.yaml").write_text(yaml.safe_dump({
        "train": {"method": "adamatch", "steps": args.steps, "batch_size": args.batch_size},
        "grid": {"method_args.alignment": list(VARIANTS), "seed": seeds}}, sort_keys=False))

    from tfuda.grid import read_sweep_file
    from tfuda.sweep import main as sweep

    sweep(["--config", str(out / "sweep.yaml"), "--out", str(out / "runs")])
    accuracy: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    wall: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for point in read_sweep_file(str(out / "sweep.yaml")).points:
        metrics = json.loads((out / "runs" / point.name / "metrics.json").read_text())
        accuracy[point.values["method_args.alignment"]].append(metrics["target_accuracy"])
        wall[point.values["method_args.alignment"]].append(metrics["wall_time_s"])
    lines = [f"AdaMatch digits -> digits-m, cnn-small, batch {args.batch_size}, {args.steps} steps, {cpu_model()}", "",
             f"| alignment | {' | '.join(f'seed {s}' for s in seeds)} | mean | std | wall time per run |",
             f"|---|{'---|' * len(seeds)}---|---|---|"]
    for variant in VARIANTS:
        values = accuracy[variant]
        lines.append(f"| {variant} | {' | '.join(f'{v:.4f}' for v in values)} | {np.mean(values):.4f} | "
                     f"{np.std(values):.4f} | {np.mean(wall[variant]):.0f} s |")
    text = "\n".join(lines)
    print(text)
    (out / "alignment.md").write_text(text + "\n")


if __name__ == "__main__":
    from tfuda.cli import quiet_output

    with quiet_output():
        main()
