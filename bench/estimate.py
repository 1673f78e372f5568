"""How close label-free estimates of target accuracy come to the true one, on finished runs.

    python bench/estimate.py RUN_DIR_OR_GLOB [...] [--out bench/out/estimate.md]

For every finished run that adapts one domain to another (oracle runs, source = target, are
skipped) and has a labeled held-out source set (a source-free run: its `--eval-source`), candidate estimators on the run's unlabeled
target sample (the validators' sample), beside the run's true target accuracy on `TARGET:test`
(read only here, to judge the estimates):

* `confidence`: the mean top-1 probability on the target.
* `doc`: difference of confidences (Guillory et al., ICCV 2021): source accuracy minus the fall
  in mean confidence from source to target.
* `atc`: average thresholded confidence (Garg et al., ICLR 2022), negative-entropy score: the
  threshold is fitted on held-out labeled source images so that the fraction above it equals
  their accuracy; the target's fraction above it is the estimate.
* `doc`/`atc` are fitted on the held-out source images as they are (`clean`: where every image is
  classified correctly the threshold says little) and on two strongly augmented copies (`aug`,
  the run's strong view: RandAugment + Cutout), whose accuracy is below 1.
* `confidence`/`doc`/`atc (T aug)`: the same on probabilities rescaled by the temperature that
  fits the augmented held-out source best (negative log-likelihood; temperature scaling, Guo et
  al., ICML 2017): self-training makes a model over-confident, and this calibrates it where it
  is known to err.
* `agreement (target aug)`: how often the prediction survives the strong view of the target image.
* `nearest source agreement`: how often the prediction is the label of the nearest held-out source
  image in the model's feature space (cosine).
* `in-dist ...`: the fraction of target images inside the source's feature distribution (nearest
  held-out source image no farther than 95% of the source images' own nearest neighbours), and
  ATC/DoC on those with chance (1/K) assumed on the others.

* `cot (...)`: confidence optimal transport (Lu et al., NeurIPS 2023; `tfuda.validate.estimate`)
  onto labels with the source's class proportions, the run's EM estimate of the target's, or the
  `plausible prior` between them (`plausible_prior`); `true prior: oracle` uses the target's true
  proportions — a diagnostic that reads target labels, not an estimator.
* `run's estimate (est_accuracy)`: what runs print and record (`tfuda.validate.estimate.
  estimate_accuracy`: calibrated COT with the plausible prior on 500 held-out source images in two
  augmented views), recomputed here so runs made before it are judged too.

Prints each run and, per estimator, the mean and max absolute error and how many runs it misses
by more than 10 points, and the max error apart on runs whose model raised the collapse alarm and
runs whose model did not (the error bar a run prints, `tfuda.validate.estimate.MAX_ERROR_MEASURED`);
then each run's change in true and estimated target accuracy against the source-only run of its
task and seed (a run from a model: against its start), and whether the estimate reports a loss
of more than 5 points as an improvement or such a gain as none (the sweep's verdict and a run's
advice speak from the estimate). Runs linked into several outputs (`bench/suite.py --reuse`)
count once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from accuracy import publish, run_dirs, run_quietly
from tfuda.environment import cpu_model
from tfuda.validate import ESTIMATE
from tfuda.validate.estimate import cot, estimate_accuracy, fit_temperature, plausible_prior, scale

def neg_entropy_scores(probs: np.ndarray) -> np.ndarray:
    """float64 `[N]`: -H(p) of each row of `probs` `[N, K]`."""
    from tfuda.validate.entropy import entropies

    return -np.asarray(entropies(np.asarray(probs, np.float64)))


def confidence(target_probs: np.ndarray, **_) -> float:
    """Mean top-1 probability on the target."""
    return float(np.asarray(target_probs).max(axis=1).mean())


def doc(target_probs: np.ndarray, source_probs: np.ndarray, source_labels: np.ndarray) -> float:
    """Source accuracy - (mean source confidence - mean target confidence), clipped to [0, 1]."""
    source_accuracy = float(np.mean(source_probs.argmax(axis=1) == source_labels))
    shift = confidence(source_probs) - confidence(target_probs)
    return float(np.clip(source_accuracy - shift, 0.0, 1.0))


def atc_threshold(scores: np.ndarray, correct: np.ndarray) -> float:
    """The t with mean(scores > t) = mean(correct): the (1 - accuracy) quantile of the scores."""
    accuracy = float(np.mean(correct))
    if accuracy >= 1.0:
        return float(np.min(scores)) - 1e-12
    return float(np.quantile(scores, 1.0 - accuracy, method="lower"))


def atc(target_probs: np.ndarray, source_probs: np.ndarray, source_labels: np.ndarray) -> float:
    """Fraction of target images whose negative entropy exceeds the source-fitted threshold."""
    threshold = atc_threshold(neg_entropy_scores(source_probs), source_probs.argmax(axis=1) == source_labels)
    return float(np.mean(neg_entropy_scores(target_probs) > threshold))


ESTIMATORS = {"confidence": confidence, "doc": doc, "atc": atc}

def unit_rows(features: np.ndarray) -> np.ndarray:
    """Each row of `features` `[N, D]` scaled to unit length (cosine similarities by matmul)."""
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


IN_QUANTILE = 0.95
"""A target image is in the source's distribution when its nearest held-out source image is at
most as far (cosine distance, model features) as this quantile of the source images' own
nearest-neighbour distances."""


def in_distribution(target_probs, target_features, source_probs, source_features, source_labels) -> dict:
    """`in-dist ...` estimates: the estimator on the target images within the source's feature
    distribution, chance (1/K) on the others."""
    src, tgt = unit_rows(source_features), unit_rows(target_features)
    own = src @ src.T
    np.fill_diagonal(own, -np.inf)
    limit = np.quantile(1 - own.max(axis=1), IN_QUANTILE)
    inside = (1 - (tgt @ src.T).max(axis=1)) <= limit
    chance = 1.0 / target_probs.shape[1]
    out = {"in-dist fraction": float(inside.mean())}
    for name in ("atc", "doc"):
        value = ESTIMATORS[name](target_probs[inside], source_probs, source_labels) if inside.any() else 0.0
        out[f"in-dist {name}"] = float(inside.mean() * value + (1 - inside.mean()) * chance)
    return out

RUNS_ESTIMATE = "run's estimate (est_accuracy)"
"""The estimator runs print and record."""
SAMPLE = 1000
"""Target images scored (the validators' default sample) and held-out source images used."""


def source_views(images: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The held-out source images as given (`clean`) and two strongly augmented copies (`aug`), uint8."""
    from pipelines.augment import Augment
    from tfuda.validate.sample import strong_views

    return {"clean": images, "aug": strong_views(images, Augment(), seed, 2)}


def judge(path: Path) -> dict | None:
    """`{run, method, true, estimates {name: value}}` of one run, or None when it cannot be judged."""
    from pipelines.feeds import first_images
    from pipelines.run_data import RunData
    from tfuda.rundir import RunDir
    from tfuda.validate.sample import TargetSample, model_outputs

    run = RunDir(path)
    config, metrics = run.config(), run.metrics()
    if config["source"] == config["target"] or metrics.get("target_accuracy") is None:
        return None
    data = RunData(config, run.class_names(), f"run '{path}'")
    if data.eval_source is None:
        return None
    model = run.load_model()
    size = config["image_size"]
    target = TargetSample(data.target, min(SAMPLE, data.target.info.num_examples), size, config["seed"])
    target_probs, target_features = target.outputs(model)
    images, labels = first_images(data.eval_source, SAMPLE, size, shuffle_seed=0)
    estimates = {"confidence": ESTIMATORS["confidence"](target_probs)}
    strong = source_views(target.images, config["seed"] + 1)["aug"]
    strong_probs, _ = model_outputs(model, strong)
    twice = np.tile(target_probs.argmax(axis=1), 2)
    estimates["agreement (target aug)"] = float(np.mean(strong_probs.argmax(axis=1) == twice))
    for view, pixels in source_views(images, config["seed"]).items():
        probs, features = model_outputs(model, pixels)
        if view == "clean":
            nearest = (unit_rows(target_features) @ unit_rows(features).T).argmax(axis=1)
            estimates["nearest source agreement"] = float(np.mean(labels[nearest] == target_probs.argmax(axis=1)))
            estimates.update(in_distribution(target_probs, target_features, probs, features, labels))
        truth = np.tile(labels, len(pixels) // len(labels))
        for name in ("doc", "atc"):
            estimates[f"{name} ({view})"] = ESTIMATORS[name](target_probs, probs, truth)
        if view == "aug":
            t = fit_temperature(probs, truth)
            estimates["temperature (aug)"] = t
            calibrated, calibrated_source = scale(target_probs, t), scale(probs, t)
            estimates["confidence (T aug)"] = confidence(calibrated)
            source_prior = np.bincount(labels, minlength=target_probs.shape[1])
            estimates["cot (source prior)"] = cot(target_probs, source_prior)
            estimates["cot (T aug, source prior)"] = cot(calibrated, source_prior)
            if metrics.get("estimated_target_prior"):
                estimates["cot (estimated prior)"] = cot(target_probs, np.asarray(metrics["estimated_target_prior"]))
                estimates["cot (T aug, estimated prior)"] = cot(calibrated, np.asarray(metrics["estimated_target_prior"]))
                estimates["cot (T aug, plausible prior)"], _ = plausible_prior(
                    calibrated, metrics["estimated_target_prior"], source_prior)
            if metrics.get("target_confusion"):  # a diagnostic, not an estimator: it reads the target's labels
                estimates["cot (T aug, true prior: oracle)"] = cot(calibrated, np.sum(metrics["target_confusion"], axis=1))
            for name in ("doc", "atc"):
                estimates[f"{name} (T aug)"] = ESTIMATORS[name](calibrated, calibrated_source, truth)
        estimates[f"source accuracy ({view})"] = float(np.mean(probs.argmax(axis=1) == truth))
    estimates[RUNS_ESTIMATE] = run_estimate(config, data, model, target_probs)
    task = f"{config['source'] or config['eval_source'].split(':')[0]} -> {config['target']}"
    start = metrics["eval_history"][0] if metrics["eval_history"][0]["step"] == 0 else {}
    return {"run": path.name, "method": config["method"], "task": task, "seed": config["seed"],
            "from_model": config.get("init") is not None, "true": metrics["target_accuracy"], "estimates": estimates,
            "start": (start.get("eval/target_accuracy"), start.get(f"validators/{ESTIMATE}"))}


def reference(run: dict, judged: list[dict]) -> tuple[str, float, float] | None:
    """What a run is judged against: `(name, true, estimated)` target accuracy of the model it
    started from (a run from a model: its step-0 evaluation) or of the source-only run of its
    task and seed (of its budget where there is one); None without one."""
    if run["from_model"]:
        return ("its start", *run["start"]) if None not in run["start"] else None
    if run["method"] == "source-only":
        return None
    candidates = [j for j in judged if j["task"] == run["task"] and j["seed"] == run["seed"]
                  and j["method"] == "source-only" and not j["from_model"]]
    baseline = min(candidates, key=lambda j: j["steps"] != run["steps"], default=None)  # same budget first
    return None if baseline is None else ("source-only", baseline["true"], baseline["estimates"][RUNS_ESTIMATE])


def verdicts(judged: list[dict]) -> list[str]:
    """Markdown: each run's change in true and estimated target accuracy against its `reference`,
    and what the run or its sweep reports: a run from a model that ends with a warning
    (`tfuda.validate.advice`: its estimate or held-out source accuracy fell by more than
    `SOURCE_DROP`), or an adapted run whose final model raised the collapse alarm, a `loss`;
    otherwise `improvement` when the estimate rose (the sweep's verdict), `loss` when it did not. Wrong: a loss of more than `SOURCE_DROP` reported as an improvement,
    or a gain of more than that as a loss."""
    from tfuda.leaderboard import helped
    from tfuda.validate.advice import SOURCE_DROP

    lines = ["| run | against | true change | estimated change | reported | wrong |", "|---|---|---|---|---|---|"]
    wrong = compared = 0
    for run in judged:
        ref = reference(run, judged)
        if ref is None:
            continue
        name, ref_true, ref_est = ref
        change, estimated = run["true"] - ref_true, run["estimates"][RUNS_ESTIMATE] - ref_est
        if run["from_model"]:
            warned, improvement = run["warned"], estimated > 0 and not run["warned"]
        else:  # the sweep's verdict (tfuda.leaderboard)
            warned = run["collapsed"] and "collapse alarm"
            improvement = helped(run["estimates"][RUNS_ESTIMATE], ref_est, run["collapsed"])
        miss = (change < -SOURCE_DROP and improvement) or (change > SOURCE_DROP and not improvement)
        compared, wrong = compared + 1, wrong + miss
        said = "improvement" if improvement else f"loss ({warned})" if warned else "loss"
        lines.append(f"| {run['run']} | {name} | {change:+.3f} | {estimated:+.3f} | {said} | {'**yes**' if miss else ''} |")
    return [f"Reported against the reference: {wrong} of {compared} runs wrong (a loss or a gain of more than "
            f"{SOURCE_DROP * 100:.0f} points reported the other way).", "", *lines]


def outcome(path: Path) -> dict:
    """What the run says of its end, from one read of its `metrics.json`: `warned` ("warning" when
    a run from a model got worse than its start, `tfuda.validate.advice`; else None) and
    `collapsed` (its model raised the collapse alarm; the sweep's verdict then claims no help) and
    its `steps`."""
    from tfuda.rundir import RunDir
    from tfuda.validate.advice import advice
    from tfuda.validate.alarm import model_alarmed

    metrics = RunDir(path).metrics()
    lines = advice(metrics["eval_history"], metrics["steps"])
    return {"warned": "warning" if any(line.startswith("warning:") for line in lines) else None,
            "collapsed": model_alarmed(metrics), "steps": metrics["steps"]}


def run_estimate(config: dict, data, model, target_probs: np.ndarray) -> float:
    """`est_accuracy` as a run computes it at its end (`tfuda.validate.sample.TargetValidation`),
    for runs made before runs recorded it."""
    from pipelines.augment import Augment
    from tfuda.validate.prior import estimate_prior
    from tfuda.validate.sample import HELD_OUT_SIZE, HeldOutSource, source_prior

    held_out = HeldOutSource(data.eval_source, HELD_OUT_SIZE, config["image_size"], Augment(flip=config.get("flip", False)),
                             config["seed"])
    prior = source_prior(data.source or data.eval_source, target_probs.shape[1])  # as the run (tfuda.engine.run)
    return estimate_accuracy(target_probs, held_out.probs(model), held_out.labels, estimate_prior(target_probs, prior),
                             prior).value


def judged_runs(paths: list[Path], cache: Path) -> list[dict]:
    """`judge` of each run, reusing the judgments in `cache` (JSON, rewritten after each new one)
    of runs whose `metrics.json` has not changed since."""
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    judged = []
    for path in paths:
        stamp = (path / "metrics.json").stat().st_mtime
        entry = known.get(str(path))
        if entry is None or entry["stamp"] != stamp:
            entry = known[str(path)] = {"stamp": stamp, "judged": judge(path)}
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.with_suffix(".tmp").write_text(json.dumps(known, default=float))
            cache.with_suffix(".tmp").replace(cache)
        if entry["judged"] is not None:
            judged.append({**entry["judged"], **outcome(path)})
    return judged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories or glob patterns")
    parser.add_argument("--out", default="bench/out/estimate.md",
                        help="the tables; the runs' judgments are kept beside it (.json) and reused")
    args = parser.parse_args()
    judged = judged_runs(run_dirs(args.runs), Path(args.out).with_suffix(".json"))
    if not judged:
        parser.error("no finished adaptation run with a held-out source set among the given runs")
    names = [n for n in dict.fromkeys(n for j in judged for n in j["estimates"])
             if not n.startswith(("source accuracy", "temperature"))]
    lines = [f"{len(judged)} runs, {cpu_model()}", "",
             "| run | true | " + " | ".join(names) + " | source acc (clean / aug) | T |",
             "|---|---|" + "---|" * len(names) + "---|---|"]
    for j in judged:
        e = j["estimates"]
        lines.append(f"| {j['run']} | {j['true']:.3f} | " + " | ".join(f"{e[n]:.3f}" if n in e else "—" for n in names)
                     + f" | {e['source accuracy (clean)']:.3f} / {e['source accuracy (aug)']:.3f} | {e['temperature (aug)']:.2f} |")
    lines += ["", "| estimator | mean abs error | max abs error | runs off by > 10 points |", "|---|---|---|---|"]
    for name in names:
        errors = np.array([abs(j["estimates"][name] - j["true"]) for j in judged if name in j["estimates"]])
        lines.append(f"| {name} | {errors.mean():.3f} | {errors.max():.3f} | {int((errors > 0.10).sum())} of {len(errors)} |")
    lines += ["", "| estimator | max abs error, runs whose model raised no collapse alarm | raised it |",
              "|---|---|---|"]
    for name in names:
        cells = []
        for alarmed in (False, True):
            errors = [abs(j["estimates"][name] - j["true"]) for j in judged
                      if name in j["estimates"] and j["collapsed"] == alarmed]
            cells.append(f"{max(errors):.3f} ({len(errors)} runs)" if errors else "—")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    publish([*lines, "", *verdicts(judged)], Path(args.out))


if __name__ == "__main__":
    run_quietly(main)
