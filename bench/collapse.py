"""What the collapse alarm reads, measured on finished runs: how concentrated their target predictions are.

    python bench/collapse.py RUN_DIR [RUN_DIR ...]

For each run, on the validators' target sample (`tfuda.validate.sample`): the entropy of the
mean prediction as a fraction of log K, the largest ratio of a class's predicted share to its
source share, and the target accuracy when the target has labels (for this table only) — the
measurements the alarm's thresholds (`tfuda.validate.alarm`) were chosen from.
"""

from __future__ import annotations

import sys

from tfuda.environment import cpu_model


def main() -> None:
    from pipelines.run_data import RunData
    from tfuda.engine.evaluate import evaluate
    from tfuda.rundir import RunDir
    from tfuda.validate.alarm import concentration
    from tfuda.validate.sample import TargetSample, source_prior

    print(f"{cpu_model()}\n{'run':<40} {'H(mean p)/log K':>15} {'max share ratio':>15} {'target acc':>10}")
    for path in sys.argv[1:]:
        run = RunDir(path)
        config = run.config()
        data = RunData(config, run.class_names(), f"run '{path}'")
        model = run.load_model()
        sample = TargetSample(data.target, min(1000, data.target.info.num_examples), config["image_size"], config["seed"])
        probs, _ = sample.outputs(model)
        prior = source_prior(data.source, len(data.class_names))
        spread, ratio, _ = concentration(probs, prior)
        accuracy = evaluate(model, data.eval_target, config["image_size"]).accuracy if data.eval_target else float("nan")
        print(f"{path:<40} {spread:>15.3f} {ratio:>15.2f} {accuracy:>10.4f}")


if __name__ == "__main__":
    main()
