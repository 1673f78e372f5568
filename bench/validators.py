"""Which label-free validator picks runs best: a grid on digits -> digits-m ranked by each validator.

    python bench/validators.py [--seeds 0,1] [--steps-list 400,1200] [--lrs 0.03,0.003] [--jobs 1]
                               [--out bench/out/validators]

Trains a sweep (`python -m tfuda.sweep`) of methods (adamatch, fixmatch, dann, source-only) x
`--lrs` x `--steps-list` x `--seeds` at batch 8, evaluated every 200 steps, then prints, per validator:

  * Spearman rank correlation between its score and target accuracy (`digits-m:test`) over the
    runs that left a model, and the *selection regret* = best target accuracy of the grid - target
    accuracy of the run with the highest score. Scored twice on samples of equal size: a seeded
    sample of the target *training* images (what a run scores) and the held-out target test
    images (never trained on; their labels are not read for the score);
  * the sweep's regret: the run `tfuda.sweep` would choose by it (the run's own scores, runs whose
    model raised the collapse alarm last);
  * the mean target-accuracy gain of `--select <validator>` over `--select last`, from each run's
    evaluations (`eval_history`).

and for the collapse alarm: which runs it fired on, beside the runs that collapsed — judged with
the target test labels: some class is predicted at least 3 (or 4) times as often as it occurs —
and the runs whose accuracy fell below the source-only run of the same steps, learning rate and seed. Target labels are used here to judge
the validators, never by them. Finished runs in `--out` are reused (the sweep resumes).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from accuracy import publish, run_quietly, selected_evaluation
from tfuda.environment import cpu_model

METHODS = ("adamatch", "fixmatch", "dann", "source-only")
SAMPLE = 360
"""Images per scoring sample: all of `digits-m:test`, and as many training-target images."""
COLLAPSED = (3.0, 4.0)
"""A run collapsed when a class's predicted share on the target test set is >= this x its true share
(two thresholds: moderate and severe concentration)."""


def sweep_file(args: argparse.Namespace, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "rank_by": "im",
        "train": {"source": "digits", "target": "digits-m", "batch_size": 8, "eval_every": 200,
                  "checkpoint_every": 200},
        "grid": {"method": list(METHODS), "lr": [float(x) for x in args.lrs.split(",")],
                 "steps": [int(x) for x in args.steps_list.split(",")],
                 "seed": [int(x) for x in args.seeds.split(",")]},
    }, sort_keys=False))


def rescore(run_dir: Path) -> tuple[dict[str, dict[str, float]], float]:
    """The run's model scored on a training-target sample and on the held-out target images, and
    the largest ratio of a class's predicted share to its true share on the target test set."""
    from pipelines.run_data import RunData
    from tfuda.inference import predict_source
    from tfuda.rundir import RunDir
    from tfuda.validate.advice import start_of
    from tfuda.validate.sample import TargetSample, expected_shares, score, source_prior

    run = RunDir(run_dir)
    config, model = run.config(), run.load_model()
    data = RunData(config, run.class_names(), f"run '{run_dir}'")
    start = start_of(run.metrics().get("eval_history") or []) or {}  # as the run scored class_balance
    expected = expected_shares(source_prior(data.source, len(data.class_names)), start.get("estimated_target_prior"))
    prior = expected / expected.sum()
    samples = {"train": data.target, "held-out": data.eval_target}
    scores = {name: score(*TargetSample(source, SAMPLE, config["image_size"], 0).outputs(model), prior)
              for name, source in samples.items()}
    probs, labels = predict_source(model, data.eval_target, config["image_size"])
    classes = len(data.class_names)
    predicted = np.bincount(probs.argmax(axis=1), minlength=classes) / len(labels)
    true = np.bincount(labels, minlength=classes) / len(labels)
    return scores, float((predicted / np.maximum(true, 1e-12)).max())


def spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def select_gain(metrics: dict, name: str) -> float | None:
    """Target accuracy of the evaluation `--select name` keeps minus that of the last one."""
    best = selected_evaluation(metrics, name)
    if best is None:
        return None
    last = [e for e in metrics["eval_history"] if "eval/target_accuracy" in e][-1]
    return best["eval/target_accuracy"] - last["eval/target_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps-list", default="400,1200")
    parser.add_argument("--lrs", default="0.03,0.003")
    parser.add_argument("--jobs", default="1")
    parser.add_argument("--out", default=f"bench/out/validators-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args()
    out = Path(args.out)
    sweep_file(args, out / "sweep.yaml")

    from tfuda.grid import read_sweep_file
    from tfuda.leaderboard import USABLE, rank, read_entry
    from tfuda.sweep import main as sweep
    from tfuda.validate import SCORES

    started = time.perf_counter()
    sweep(["--config", str(out / "sweep.yaml"), "--out", str(out / "runs"), "--jobs", args.jobs])
    wall = time.perf_counter() - started
    points = read_sweep_file(str(out / "sweep.yaml")).points
    entries = [read_entry(p, out / "runs") for p in points]
    runs = [(p, e) for p, e in zip(points, entries) if e.status in USABLE]
    metrics = {p.name: json.loads((out / "runs" / p.name / "metrics.json").read_text()) for p, _ in runs}
    accuracy = {p.name: e.target_accuracy for p, e in runs}
    rescored = {p.name: rescore(out / "runs" / p.name) for p, _ in runs}
    scores = {name: value[0] for name, value in rescored.items()}
    share = {name: value[1] for name, value in rescored.items()}
    best = max(accuracy.values())

    lines = [f"digits -> digits-m, cnn-small, batch 8, {len(entries)} runs ({len(runs)} left a model), "
             f"{cpu_model()}, sweep wall time {wall / 60:.0f} min", "",
             "| validator | Spearman (train-target sample) | regret | Spearman (held-out target) | regret | "
             "sweep regret (run's scores, alarm rule) | --select gain over last |",
             "|---|---|---|---|---|---|---|"]
    for name in SCORES:
        cells = []
        for sample in ("train", "held-out"):
            values = {run: scores[run][sample].get(name) for run in accuracy}
            values = {run: v for run, v in values.items() if v is not None}
            if name == "source_accuracy":
                values = {p.name: e.scores[name] for p, e in runs if name in e.scores}
            cells += [f"{spearman([values[r] for r in values], [accuracy[r] for r in values]):.2f}",
                      f"{best - accuracy[max(values, key=values.get)]:.4f}"]
        chosen = rank([e for _, e in runs], name)[0]
        gains = [g for g in (select_gain(metrics[run], name) for run in accuracy) if g is not None]
        cells += [f"{best - chosen.target_accuracy:.4f}",
                  f"{np.mean(gains):+.4f} ({len(gains)} runs)" if gains else "n/a (every evaluation alarmed)"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    lines += ["", f"best target accuracy in the grid: {best:.4f}", "",
              "| run | target accuracy | source-only (same steps, lr, seed) | im | largest predicted / true share "
              "(test) | collapse alarm on its model |", "|---|---|---|---|---|---|"]
    alarmed = {p.name for p, e in runs if e.alarm}
    for point, entry in runs:
        baseline = next((accuracy[p.name] for p, _ in runs if p.values["method"] == "source-only"
                         and all(p.values[k] == point.values[k] for k in ("lr", "steps", "seed"))), None)
        lines.append(f"| {point.name} | {accuracy[point.name]:.4f} | "
                     f"{'' if baseline is None else f'{baseline:.4f}'} | {entry.scores.get('im', float('nan')):.3f} | "
                     f"{share[point.name]:.2f} | {'yes' if entry.alarm else 'no'} |")
    lines.append("")
    for threshold in COLLAPSED:
        collapsed = {name for name, ratio in share.items() if ratio >= threshold}
        lines.append(f"collapsed (a class predicted >= {threshold:g}x its true share on the test set): "
                     f"{len(collapsed)} runs; the alarm fired on {len(collapsed & alarmed)} of them and on "
                     f"{len(alarmed - collapsed)} of the {len(accuracy) - len(collapsed)} others")
    publish(lines, out / "validators.md")


if __name__ == "__main__":
    run_quietly(main)
