"""Every method on every built-in shift: target accuracy and the fraction of the source-only -> oracle gap closed.

    python bench/suite.py [--methods source-only,adamatch,adamatch-no-refine,adamatch-running,adamatch-prior,adamatch-entropy,
                                    adamatch-realign,adamatch-realign-late,adamatch-vat,adamatch-vmt,adamatch-refine,adamatch-refine-source,adamatch-refine-align,adamatch-refine-frozen,adamatch-refine-shifted,adamatch-refine-vat,
                                    adamatch-realign-refine,adamatch-in,source-only-in,adamatch-wd,adamatch-nesterov,
                                    fixmatch,dann,contrastive]
                          [--tasks SOURCE:TARGET,...] [--steps N] [--batch-size N] [--seeds 0]
                          [--out bench/out/suite] [--reuse DIR,...] [--select NAME] [--no-train]
                          [--samples docs/suite.png]

For each task of `pipelines.builtin.SUITE` (labeled source -> unlabeled target; `--tasks` picks
some, e.g. `--tasks mnist:digits,mnist:mnist-m`) trains each
method, and an oracle (source-only on the *labeled* target training images, same pipeline and
budget), at the default budget set by each task's target size (`tfuda.budget`) or `--steps`, in
one sweep (`python -m tfuda.sweep`; finished runs in `--out`, and in the earlier outputs `--reuse`
names, are reused). Prints, per task, each method's target accuracy on `TARGET:test` (never trained on: mean and range over the
seeds), the gap closed (method - source-only) / (oracle - source-only) of the means, the steps
and the wall time, with the CPU it ran on, and the commits and CPUs its runs were made on (each
run's `metrics.json` records them).
`adamatch` is the default (its batch-mean alignment and the refinement stage in the last quarter
of the run); `adamatch-no-refine` is the earlier default, without the stage (`--method-arg
refine=0`). The variants below that change something else keep `refine=0`, as they were measured
(they changed the earlier default): `adamatch-running` aligns with the
official code's running statistics (`--method-arg alignment=running`), `adamatch-prior` with the
target prior estimated online (`--method-arg alignment=prior`); `adamatch-entropy` adds the
target predictions' conditional entropy (`--method-arg entropy=0.1`); `adamatch-realign` and
`adamatch-realign-late` align the last half or quarter of the run to the target prior its EMA
model estimates then (`--method-arg realign=0.5`, `0.25`); `adamatch-vat` adds virtual
adversarial training on the target at weight 1 (`--method-arg vat=1.0`, the VAT paper's);
`adamatch-vmt` virtual mixup training on the target at weight 0.1 (`--method-arg vmt=0.1`, the
official VMT code's target weight);
`adamatch-refine` ends with a refinement stage on the target alone, labelled by the EMA model,
for the last quarter of the run (`--method-arg refine=0.25`, now the default's, as measured before it
was), `adamatch-refine-source` keeping the
labeled source loss in that stage (`refine_source=1.0`), `adamatch-refine-align` aligning the
stage's teacher labels to the source's mean prediction (`refine_align=true`), `adamatch-refine-frozen`
with the stage's teacher frozen at its start (`refine_teacher=frozen`), `adamatch-refine-shifted` refining
only a target whose class proportions the EMA model finds moved when the stage would begin
(`refine_shifted=true`), `adamatch-refine-vat` with VAT at weight 1 in both stages (`vat=1.0`,
DIRT-T's regulariser), `adamatch-realign-refine` with
`realign=0.5` as well (the stage's teacher labels aligned to the estimated prior); `adamatch-in` and
`source-only-in` train `--model cnn-small-in` (instance-normalised input); `adamatch-wd` is AdaMatch
with the official code's weight decay 0.001 instead of tfuda's 5e-4, `adamatch-nesterov` with
Nesterov momentum instead of the official (and default) plain momentum. (The README's tables were
measured while `running` was the default, as `adamatch`, `adamatch-batch` and `adamatch-wd` =
running statistics with weight decay 0.001; the plain-momentum rows were measured as
`--momentum plain` while Nesterov was the default, the Nesterov rows as the default of then.)
`--select NAME` adds the target accuracy and gap closed of the evaluation `--select NAME` would
keep in each run (the highest label-free score NAME among its evaluations without a collapse
alarm), replayed from the runs' evaluations: no run trains again.
`--no-train` trains nothing: it reports the finished runs of the points in `--out` and `--reuse`.
`--samples PNG` writes a row of sample images per data set of the suite (the README's picture)
and exits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from accuracy import gap_closed, publish, run_quietly, selected_evaluation
from tfuda.environment import cpu_model

NO_REFINE = {"method": "adamatch", "method_args.refine": 0.0}
"""AdaMatch without the refinement stage: the earlier default, which the variants changing one thing
else were measured against."""
VARIANTS = {
    "source-only": {"method": "source-only"},
    "adamatch": {"method": "adamatch"},
    "adamatch-running": {**NO_REFINE, "method_args.alignment": "running"},
    "adamatch-prior": {**NO_REFINE, "method_args.alignment": "prior"},
    "adamatch-no-refine": NO_REFINE,
    "adamatch-in": {**NO_REFINE, "model": "cnn-small-in"},
    "adamatch-entropy": {**NO_REFINE, "method_args.entropy": 0.1},
    "adamatch-realign": {**NO_REFINE, "method_args.realign": 0.5},
    "adamatch-realign-late": {**NO_REFINE, "method_args.realign": 0.25},
    "adamatch-vat": {**NO_REFINE, "method_args.vat": 1.0},
    "adamatch-vmt": {**NO_REFINE, "method_args.vmt": 0.1},
    "adamatch-refine": {"method": "adamatch", "method_args.refine": 0.25},
    "adamatch-refine-source": {"method": "adamatch", "method_args.refine": 0.25, "method_args.refine_source": 1.0},
    "adamatch-refine-align": {"method": "adamatch", "method_args.refine": 0.25, "method_args.refine_align": True},
    "adamatch-refine-frozen": {"method": "adamatch", "method_args.refine": 0.25,
                               "method_args.refine_teacher": "frozen"},
    "adamatch-refine-shifted": {"method": "adamatch", "method_args.refine": 0.25,
                                "method_args.refine_shifted": True},
    "adamatch-refine-vat": {"method": "adamatch", "method_args.refine": 0.25, "method_args.vat": 1.0},
    "adamatch-realign-refine": {"method": "adamatch", "method_args.realign": 0.5, "method_args.refine": 0.25},
    "source-only-in": {"method": "source-only", "model": "cnn-small-in"},
    "adamatch-wd": {**NO_REFINE, "weight_decay": 0.001},
    "adamatch-nesterov": {**NO_REFINE, "momentum": "nesterov"},
    "fixmatch": {"method": "fixmatch"},
    "dann": {"method": "dann"},
    "contrastive": {"method": "contrastive"},
}
"""Method variants by bench name: the grid values that make each."""


def grid(tasks, variants: list[str], seeds: list[int]) -> list[dict]:
    """The sweep's grids: every variant on every task, and one oracle per task."""
    grids = []
    for source, target in tasks:
        for name in variants:
            grids.append({"source": source, "target": target, **VARIANTS[name], "seed": seeds})
        grids.append({"source": target, "target": target, "method": "source-only", "eval_target": f"{target}:test",
                      "eval_source": f"{source}:test", "seed": seeds})
    return grids


def percent(fraction: float) -> str:
    """A gap closed as a percentage (n/a without the runs it needs)."""
    return "n/a" if np.isnan(fraction) else f"{fraction:.0%}"


def variant_of(values: dict) -> str:
    """The bench name of a sweep point (`oracle` for the labeled-target run)."""
    if values["source"] == values["target"]:
        return "oracle"
    return next(name for name, flags in VARIANTS.items()
                if all(values.get(k) == v for k, v in flags.items()) and set(values) - {"source", "target", "seed"} == set(flags))


def link_finished(points, earlier: list[Path], out: Path) -> None:
    """Links into `out`/runs each point's completed run found in an `earlier` suite output (the
    first that has it), unless `out` has the run already."""
    from tfuda.leaderboard import USABLE, read_entry, run_dir

    (out / "runs").mkdir(parents=True, exist_ok=True)
    for point in points:
        if run_dir(out / "runs", point).exists():
            continue
        found = next((d for d in earlier if read_entry(point, d / "runs").status in USABLE), None)
        if found is not None:
            run_dir(out / "runs", point).symlink_to(run_dir(found / "runs", point).resolve(), target_is_directory=True)


def write_samples(path: Path, count: int = 10) -> None:
    """One row of `count` training images (one per class) per built-in data set, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines import builtin

    fig, axes = plt.subplots(len(builtin.BUILTINS), count, figsize=(count * 0.8, len(builtin.BUILTINS) * 0.9))
    for row, name in enumerate(builtin.BUILTINS):
        images, labels = builtin.load(name, "train")
        for k in range(count):
            image = images[np.flatnonzero(labels == k)[0]]
            axes[row, k].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
            axes[row, k].set_xticks([])
            axes[row, k].set_yticks([])
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, help="steps of every run (default: each task's default budget)")
    parser.add_argument("--batch-size", type=int, help="labeled images a step of every run (default: each task's "
                                                       "default, set by its target's size)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--tasks", help="SOURCE:TARGET pairs of the suite, comma-separated (default: all)")
    parser.add_argument("--out", default=f"bench/out/suite-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--reuse", help="earlier --out directories, comma-separated: their finished runs of this "
                                        "sweep's points are linked into --out instead of trained again")
    parser.add_argument("--select", help="also report the evaluation `--select SELECT` would keep in each run")
    parser.add_argument("--no-train", action="store_true",
                        help="report the runs found in --out and --reuse; train none (a missing cell says n/a)")
    parser.add_argument("--samples", help="write the sample-image PNG here and exit")
    args = parser.parse_args()
    if args.samples:
        write_samples(Path(args.samples))
        return

    from pipelines.builtin import SUITE
    from tfuda.grid import read_sweep_file
    from tfuda.leaderboard import USABLE, read_entry, run_dir
    from tfuda.sweep import main as sweep

    variants = [v for v in args.methods.split(",") if v != "source-only"]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown --methods {', '.join(sorted(unknown))}: choose from {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = SUITE if not args.tasks else [tuple(task.split(":")) for task in args.tasks.split(",")]
    if set(tasks) - set(SUITE):
        parser.error(f"--tasks: choose from {', '.join(f'{s}:{t}' for s, t in SUITE)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.yaml").write_text(yaml.safe_dump({
        "train": {**({"batch_size": args.batch_size} if args.batch_size else {}),
                  **({"steps": args.steps} if args.steps else {})},
        "grid": grid(tasks, ["source-only", *variants], seeds)}, sort_keys=False))
    points = read_sweep_file(str(out / "sweep.yaml")).points
    if args.reuse:
        link_finished(points, [Path(d) for d in args.reuse.split(",")], out)
    started = time.perf_counter()
    if not args.no_train:
        sweep(["--config", str(out / "sweep.yaml"), "--out", str(out / "runs")])
    wall = time.perf_counter() - started

    results: dict[tuple[str, str], dict[str, list]] = {}
    made_on: dict[str, int] = {}
    for point in points:
        entry = read_entry(point, out / "runs")
        if entry.status in USABLE:
            env = entry.environment
            where = f"commit {env['commit'] or 'unknown'}, {env['cpu']}" if env else "not recorded"
            made_on[where] = made_on.get(where, 0) + 1
        task = (point.values["eval_source"].split(":")[0], point.values["source"]) if "eval_source" in point.values \
            else (point.values["source"], point.values["target"])
        cell = results.setdefault(task, {}).setdefault(variant_of(point.values), [])
        if entry.status in USABLE:
            kept = entry.target_accuracy
            if args.select:
                metrics = json.loads((run_dir(out / "runs", point) / "metrics.json").read_text())
                evaluation = selected_evaluation(metrics, args.select)
                kept = float("nan") if evaluation is None else evaluation["eval/target_accuracy"]
            cell.append((entry.target_accuracy, entry.wall_time_s, entry.steps, kept))
    budget = f"{args.steps} steps" if args.steps else "the default budget"
    kept_header = f" with --select {args.select} (gap) |" if args.select else ""
    batch = f"batch {args.batch_size}" if args.batch_size else "the default batch"
    lines = [f"built-in suite, cnn-small, {batch}, {budget}, seeds {args.seeds}, "
             f"{cpu_model()}, sweep wall time {wall / 60:.0f} min"
             f"{' (--no-train)' if args.no_train else ''}; target accuracy on TARGET:test (mean, range over seeds)"
             + ("; gaps against source-only's and the oracle's final models" if args.select else ""),
             "", "| task | method | target accuracy | range | gap closed | steps | wall time per run |" + kept_header,
             "|---|---|---|---|---|---|---|" + ("---|" if args.select else "")]
    for (source, target), by_variant in results.items():
        mean = {name: np.mean([r[0] for r in runs]) if runs else float("nan") for name, runs in by_variant.items()}
        for name, runs in by_variant.items():
            closed = gap_closed(mean["source-only"], mean[name], mean["oracle"])
            spread = f"{min(r[0] for r in runs):.4f}–{max(r[0] for r in runs):.4f}" if runs else "n/a"
            kept = np.mean([r[3] for r in runs]) if runs else float("nan")
            kept_cell = (f" {kept:.4f} ({percent(gap_closed(mean['source-only'], kept, mean['oracle']))}) |"
                         if args.select else "")
            lines.append(f"| {source} → {target} | {name} | {mean[name]:.4f} | {spread} | {percent(closed)} | "
                         f"{'/'.join(sorted({str(r[2]) for r in runs}))} | "
                         f"{np.mean([r[1] for r in runs]) if runs else float('nan'):.0f} s |" + kept_cell)
    lines += ["", "Runs made on: " + "; ".join(f"{where} ({count} runs)" for where, count in made_on.items())]
    publish(lines, out / "suite.md")


if __name__ == "__main__":
    run_quietly(main)
