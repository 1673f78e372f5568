"""Every method on digits -> digits-m with the same step budget and seed; a table in markdown.

    python bench/methods.py [--steps 1200] [--seed 0] [--out bench/out/methods]

Runs source-only, AdaMatch, FixMatch, DANN, contrastive (half pretraining, half fine-tuning)
and the labeled-target oracle with the CLI defaults otherwise (each method's own unlabeled
ratio and schedules), evaluates on `digits-m:test`, and prints/writes `methods.md`: method,
target accuracy, source accuracy, wall time, fraction of the source-only -> oracle gap closed.
Finished runs in `--out` are reused, so an interrupted benchmark can be continued.
"""

from __future__ import annotations

from accuracy import RUNS, bench_args, gap_closed, publish, run_all
from tfuda.environment import cpu_model

METHOD_RUNS = {
    "source-only": RUNS["source-only"],
    "adamatch": RUNS["adamatch"],
    "fixmatch": ["--method", "fixmatch", "--source", "digits", "--target", "digits-m"],
    "dann": ["--method", "dann", "--source", "digits", "--target", "digits-m"],
    "contrastive": ["--method", "contrastive", "--source", "digits", "--target", "digits-m"],
    "oracle": RUNS["oracle"],
}


def main() -> None:
    args, extra, out = bench_args(__doc__, "methods")
    results = run_all(METHOD_RUNS, args.steps, args.seed, out, extra)
    acc = {name: m["target_accuracy"] for name, m in results.items()}
    rows = [f"digits -> digits-m, cnn-small, {args.steps} steps per run, seed {args.seed}, "
            f"{cpu_model()}; target accuracy on digits-m:test", "",
            "| method | target accuracy | source accuracy | wall time | gap closed |",
            "|---|---|---|---|---|"]
    for name, m in results.items():
        closed = gap_closed(acc["source-only"], acc[name], acc["oracle"])
        rows.append(f"| {name} | {m['target_accuracy']:.4f} | {m['source_accuracy']:.4f} | "
                    f"{m['wall_time_s']:.0f} s | {closed:.0%} |")
    publish(rows, out / "methods.md")


if __name__ == "__main__":
    main()
