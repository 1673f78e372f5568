"""Source-free adaptation: SHOT and TENT from a source-only model, beside AdaMatch.

    python bench/source_free.py [--source digits] [--target digits-m] [--label-smoothing 0]
                                [--source-augment weak] [--bottleneck 0] [--steps-list 100,300,1000]
                                [--seed 0] [--out bench/out/source_free]

Trains source-only on the labeled `--source` (the CLI defaults; `--label-smoothing 0.1` is SHOT's
source recipe, `--source-augment strong` trains it on the strong view, `--bottleneck 256` gives
it SHOT's architecture: a 256-d dense + batch-norm embedding after cnn-small's pooling, on the
10-class 32x32 built-in digits), then adapts that model with SHOT and TENT using only the
unlabeled `--target` (`--init`, no source data) for each budget in `--steps-list` — TENT is
known to degrade when run long, so the budgets show the trend — each with and without batch-norm
statistics re-estimated on the target for evaluation and export (`--method-arg reestimate=`;
TENT's default is on, SHOT's off: `+bn` marks the runs with it). Prints target accuracy on
`TARGET:test`, the fraction of the source-only -> oracle gap closed and the wall time, beside
AdaMatch (which uses the source data) and the labeled-target oracle, with the CPU they ran on.
Finished runs in `--out` are reused.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from accuracy import gap_closed, publish, run_all, task_runs
from tfuda.budget import MIN_STEPS
from tfuda.environment import cpu_model


def bottleneck_model(path: Path, width: int, seed: int) -> str:
    """Writes an untrained cnn-small whose embedding is a `width`-d Dense + BatchNormalization
    bottleneck (SHOT's source architecture) to `path` (kept if it exists); returns the path."""
    if not path.is_file():
        import keras

        from tfuda.models.cnn_small import build_cnn_small
        from tfuda.models.common import classifier

        keras.utils.set_random_seed(seed)
        base = build_cnn_small(10, 32)
        x = keras.layers.Dense(width, name="bottleneck")(base.get_layer("pool").output)
        x = keras.layers.BatchNormalization(name="bottleneck_bn")(x)
        path.parent.mkdir(parents=True, exist_ok=True)
        classifier(base.input, x, 10, "cnn_small_bottleneck").save(path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps-list", default="100,300,1000", help="budgets of SHOT and TENT")
    parser.add_argument("--source-steps", type=int, default=MIN_STEPS,
                        help="steps of source-only, AdaMatch, oracle (the default budget on the built-in pairs: the floor)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", default="digits", help="labeled source of the source-only model")
    parser.add_argument("--target", default="digits-m", help="unlabeled target SHOT and TENT adapt to")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="of the source-only model (SHOT: 0.1)")
    parser.add_argument("--source-augment", choices=("weak", "strong"), default="weak",
                        help="view the source-only model trains on")
    parser.add_argument("--bottleneck", type=int, default=0,
                        help="width of a dense + batch-norm embedding in the source-only model (SHOT: 256; 0: none)")
    parser.add_argument("--out", default=f"bench/out/source_free-{time.strftime('%Y%m%d-%H%M%S')}")
    args, extra = parser.parse_known_args()
    out = Path(args.out)
    runs = task_runs(args.source, args.target)
    runs["source-only"] += ["--method-arg", f"label_smoothing={args.label_smoothing}",
                            "--method-arg", f"augment={args.source_augment}"]
    if args.bottleneck:
        runs["source-only"] += ["--init", bottleneck_model(out / f"bottleneck{args.bottleneck}.keras", args.bottleneck,
                                                           args.seed)]
    base = run_all({name: runs[name] for name in ("source-only", "oracle", "adamatch")},
                   args.source_steps, args.seed, out, [*extra, "--no-report"])
    init = str(out / "source-only")
    adapted = {}
    for steps in sorted(int(s) for s in args.steps_list.split(",")):
        for method in ("shot", "tent"):
            for reestimate in (False, True):
                name = f"{method}{'+bn' if reestimate else ''}-{steps}"
                adapted.update(run_all({name: ["--method", method, "--init", init, "--target", args.target,
                                               "--method-arg", f"reestimate={reestimate}"]},
                                       steps, args.seed, out, [*extra, "--no-report"]))
    acc = {name: m["target_accuracy"] for name, m in {**base, **adapted}.items()}
    rows = [f"{args.source} -> {args.target}, cnn-small, seed {args.seed}, source-only label smoothing "
            f"{args.label_smoothing}, {args.source_augment} augmentation, bottleneck {args.bottleneck or 'none'}, "
            f"{cpu_model()}; target accuracy on {args.target}:test", "",
            "| run | data used | steps | target accuracy | gap closed | wall time |", "|---|---|---|---|---|---|"]
    used = {"source-only": f"labeled {args.source}", "oracle": f"labeled {args.target}",
            "adamatch": f"labeled {args.source} + {args.target}"}
    for name, m in {**base, **adapted}.items():
        rows.append(f"| {name.rsplit('-', 1)[0] if name in adapted else name} | "
                    f"{used.get(name, f'source-only model + {args.target}')} | {m['steps']} | {m['target_accuracy']:.4f} | "
                    f"{gap_closed(acc['source-only'], acc[name], acc['oracle']):.0%} | {m['wall_time_s']:.0f} s |")
    publish(rows, out / "source_free.md")


if __name__ == "__main__":
    main()
