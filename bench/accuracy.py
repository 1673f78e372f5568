"""Target accuracy of source-only, AdaMatch and a labeled-target oracle on digits -> digits-m.

    python bench/accuracy.py [--steps 1200] [--seed 0] [--out bench/out/accuracy]

All three train the same model for the same number of steps with the CLI defaults (no settings
tuned for this pair) and are evaluated on `digits-m:test`, which no run trains on:
  * source-only: labeled `digits` train only;
  * AdaMatch: labeled `digits` + unlabeled `digits-m` train;
  * oracle: labeled `digits-m` train (same size as the unlabeled target set), source-only method.
Prints each accuracy and wall time, and the fraction of the source-only -> oracle gap that
AdaMatch closes: (adamatch - source_only) / (oracle - source_only).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfuda.environment import cpu_model  # noqa: E402


def task_runs(source: str = "digits", target: str = "digits-m") -> dict[str, list[str]]:
    """Source-only, AdaMatch and the labeled-target oracle on one task: {name: tfuda.train flags}."""
    return {
        "source-only": ["--method", "source-only", "--source", source, "--target", target],
        "adamatch": ["--method", "adamatch", "--source", source, "--target", target],
        "oracle": ["--method", "source-only", "--source", target, "--target", target,
                   "--eval-target", f"{target}:test", "--eval-source", f"{source}:test"],
    }


RUNS = task_runs()


def run_all(runs: dict[str, list[str]], steps: int, seed: int, out: Path, extra: list[str]) -> dict[str, dict]:
    """Trains each run in this process; returns {name: metrics.json}."""
    from tfuda.train import main as train

    results = {}
    for name, args in runs.items():
        run_dir = out / name
        if (run_dir / "metrics.json").is_file() and json.loads((run_dir / "metrics.json").read_text())["steps"] == steps:
            print(f"[{name}] reusing {run_dir}", flush=True)
        elif train([*args, "--steps", str(steps), "--seed", str(seed), "--out", str(run_dir), *extra]) != 0:
            sys.exit(f"{name} run failed")
        results[name] = json.loads((run_dir / "metrics.json").read_text())
    return results


def gap_closed(source_only: float, method: float, oracle: float) -> float:
    return (method - source_only) / max(oracle - source_only, 1e-9)


def selected_evaluation(metrics: dict, by: str) -> dict | None:
    """The evaluation of a run's `eval_history` that `--select by` keeps (`tfuda.engine.selection`):
    the highest `validators/<by>` among the evaluations without a collapse alarm that have a target
    accuracy; None when there is none. Replays the choice from a run made with any `--select`."""
    alarmed = {a["step"] for a in metrics.get("alarms") or []}
    candidates = [e for e in metrics.get("eval_history") or []
                  if f"validators/{by}" in e and "eval/target_accuracy" in e and e["step"] not in alarmed]
    return max(candidates, key=lambda e: e[f"validators/{by}"], default=None)


def publish(lines: list[str], path: Path) -> None:
    """Prints a benchmark's table and writes it to `path` (Markdown)."""
    text = "\n".join(lines)
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def run_dirs(patterns: list[str]) -> list[Path]:
    """Finished run directories (`metrics.json` and `model.keras`) matching the glob `patterns`,
    each once (a run linked into several outputs resolves to one path), sorted."""
    found = sorted({Path(p).resolve() for pattern in patterns for p in glob.glob(pattern)})  # a linked run once
    return [p for p in found if (p / "metrics.json").is_file() and (p / "model.keras").is_file()]


def run_quietly(main) -> None:
    """Runs a benchmark's `main` with TensorFlow's start-up chatter filtered, as the CLIs do."""
    from tfuda.cli import quiet_output

    with quiet_output():
        main()


def bench_args(doc: str, name: str) -> tuple[argparse.Namespace, list[str], Path]:
    """`--steps`, `--seed`, `--out` of a training benchmark; other flags pass to every run."""
    from tfuda.budget import MIN_STEPS

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=MIN_STEPS,
                        help="steps of every run (the default budget on digits -> digits-m: the floor)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=f"bench/out/{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    args, extra = parser.parse_known_args()
    return args, extra, Path(args.out)


def main() -> None:
    args, extra, out = bench_args(__doc__, "accuracy")
    results = run_all(RUNS, args.steps, args.seed, out, extra)
    acc = {name: m["target_accuracy"] for name, m in results.items()}
    lines = [f"digits -> digits-m, cnn-small, {args.steps} steps each, seed {args.seed}, {cpu_model()}",
             f"{'run':<12} {'target acc':>10} {'source acc':>10} {'wall time':>10}"]
    for name, m in results.items():
        lines.append(f"{name:<12} {m['target_accuracy']:>10.4f} {m['source_accuracy']:>10.4f} {m['wall_time_s']:>9.0f}s")
    closed = gap_closed(acc["source-only"], acc["adamatch"], acc["oracle"])
    lines.append(f"AdaMatch closes {closed:.1%} of the source-only -> oracle gap (goal >= 75%)")
    text = "\n".join(lines)
    print(text)
    (out / "accuracy.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
