"""What the schedule length costs: AdaMatch on digits -> digits-m at several `--steps`.

    python bench/schedule.py [--steps-list 300,500,800,1500] [--seed 0] [--out bench/out/schedule]

Each run is a complete schedule (warm-up, cosine decay and EMA all scale with `--steps`), the
CLI defaults otherwise. Prints target accuracy on `digits-m:test`, wall time and steps/s per
length, beside source-only at the shortest length, with the CPU they ran on: the numbers the
quick start's step count is chosen from (README, *Quick start*). Finished runs are reused.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from accuracy import RUNS, run_all
from tfuda.environment import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps-list", default="300,500,800,1500", help="comma-separated step counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=f"bench/out/schedule-{time.strftime('%Y%m%d-%H%M%S')}")
    args, extra = parser.parse_known_args()
    lengths = sorted(int(s) for s in args.steps_list.split(","))
    out = Path(args.out)
    baseline = run_all({"source-only": RUNS["source-only"]}, lengths[0], args.seed, out / f"source-only-{lengths[0]}", extra)
    rows = [f"digits -> digits-m, AdaMatch, cnn-small, seed {args.seed}, {cpu_model()}",
            f"{'steps':>6} {'target acc':>10} {'wall time':>10} {'steps/s':>8}",
            f"{'source-only ' + str(lengths[0]):>6} {baseline['source-only']['target_accuracy']:>10.4f}"]
    for steps in lengths:
        m = run_all({"adamatch": RUNS["adamatch"]}, steps, args.seed, out / f"adamatch-{steps}", extra)["adamatch"]
        rows.append(f"{steps:>6} {m['target_accuracy']:>10.4f} {m['wall_time_s']:>9.0f}s {steps / m['wall_time_s']:>8.2f}")
        print("\n".join(rows), flush=True)
    (out / "schedule.txt").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
