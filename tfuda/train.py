"""`python -m tfuda.train`: adapt a classifier from a labeled source to a target domain.

With no arguments it adapts the built-in `digits` -> `digits-m` with a small CNN.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tfuda import budget
from tfuda.atomic import write_json_atomic
from tfuda.cli import VERBOSE_HELP, HelpFormatter, command, example, run_command
from tfuda.config import (AUGMENT_ON_CHOICES, MOMENTUM_CHOICES, ON_COLLAPSE, SELECT_LAST, SETTINGS, STRATEGIES,
                          XLA_CHOICES, Config, ConfigError, read_config_file, resolve)
from tfuda.rundir import RunDir
from tfuda.validate import SCORES

S = argparse.SUPPRESS


def build_parser(prog: str = "python -m tfuda.train") -> argparse.ArgumentParser:
    """The command line: one `add_argument` per flag, grouped (long because the flags are many)."""
    from tfuda.methods import METHODS

    d = Config()
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=HelpFormatter, argument_default=S,
        epilog=example("tfuda train --out runs/demo",
                       "tfuda train --source data/studio --target data/phone --model resnet50 --out runs/phone"))
    data = p.add_argument_group("data")
    data.add_argument("--source", help=f"labeled source data spec (default {d.source})")
    data.add_argument("--target", help="unlabeled target data spec; labels in it are never trained on "
                      "(default: digits-m with the default source; the source itself under --setting ssl)")
    data.add_argument("--eval-target", help="labeled target evaluation set (default: the target's held-out split, if it has one)")
    data.add_argument("--eval-source", help="labeled source evaluation set (default: the source's held-out split, if it has one)")
    data.add_argument("--strict", action="store_true", help="fail on unreadable image files instead of skipping them")
    data.add_argument("--max-image-pixels", type=int, help="refuse folder images larger than this, width x height "
                      f"(default {d.max_image_pixels:,}): decoding one takes up to 4 bytes a pixel")
    data.add_argument("--tfds-data-dir", help="TensorFlow Datasets data dir (default $TFDS_DATA_DIR)")
    data.add_argument("--tfds-download", action="store_true", help="let TFDS download missing data sets")
    data.add_argument("--flip", action="store_true", help="random horizontal flips (natural photos; not digits or text)")
    data.add_argument("--setting", choices=SETTINGS, help="uda: labeled source + unlabeled target; ssl: K labeled "
                      "per class + unlabeled, one domain; ssda: uda + K labeled target per class (default uda)")
    data.add_argument("--labeled-per-class", type=int, help="K for --setting ssl (from --source) and ssda (from --target-labeled)")
    data.add_argument("--target-labeled", help="labeled target spec to carve K per class from (--setting ssda)")
    train = p.add_argument_group("training")
    train.add_argument("--method", help=f"training method: {', '.join(METHODS)} (default {d.method})")
    train.add_argument("--method-arg", action="append", metavar="NAME=VALUE",
                       help="a hyper-parameter of the method, e.g. tau=0.8 (repeatable; see README 'Methods')")
    train.add_argument("--init", help="start from an existing model: a run directory or a .keras classifier "
                       "(required by the source-free methods shot and tent)")
    train.add_argument("--class-names", help="with --init of a model not trained by tfuda: a text file, one class "
                       "name per line in output order")
    train.add_argument("--pretrain-steps", type=int, help="contrastive: steps of unlabeled pretraining (default: half of --steps)")
    train.add_argument("--finetune-steps", type=int, help="contrastive: steps of supervised fine-tuning (default: the rest)")
    train.add_argument("--model", help=f"model architecture (default {d.model})")
    train.add_argument("--weights", help="pretrained weights for Keras Applications models: imagenet or a .weights.h5 file")
    train.add_argument("--image-size", type=int, help=f"model input side in pixels (default {d.image_size})")
    train.add_argument("--steps", type=int, help="total training steps, also under --resume (default: "
                       f"{budget.PASSES} passes over the target's training images at "
                       f"{budget.UNLABELED_PER_LABELED} x --batch-size a step, {budget.MIN_STEPS} to "
                       f"{budget.MAX_STEPS} at batch {budget.BATCH}; the run's first line says how many and why)")
    train.add_argument("--batch-size", type=int, help=f"labeled images per step (default {budget.BATCH}; "
                       f"{budget.LARGE_BATCH} on a target of {budget.LARGE_TARGET:,} images or more)")
    train.add_argument("--uratio", type=int, help="unlabeled images per step = uratio x batch size (default: the method's)")
    train.add_argument("--lr", type=float, help="peak learning rate (default: the method's; 0.03 for SGD methods)")
    train.add_argument("--weight-decay", type=float, help=f"L2 weight decay (default {d.weight_decay})")
    train.add_argument("--ema-decay", type=float, help=f"EMA decay of the evaluated/exported weights (default {d.ema_decay})")
    train.add_argument("--momentum", choices=MOMENTUM_CHOICES, help="SGD momentum 0.9, nesterov or plain (default: the "
                       "method's; plain for adamatch, as its official code)")
    train.add_argument("--seed", type=int, help=f"fixes data order, augmentation and init (default {d.seed})")
    train.add_argument("--xla", choices=XLA_CHOICES, help="compile the train step with XLA (auto: on with a GPU)")
    train.add_argument("--augment-on", choices=AUGMENT_ON_CHOICES, help="augment in tf.data or inside the train step (default data)")
    train.add_argument("--mixed-precision", action="store_true", help="mixed_float16 with loss scaling (GPU)")
    train.add_argument("--strategy", choices=STRATEGIES, help="tf.distribute strategy: default (one device), mirrored "
                       "(local GPUs), multiworker (TF_CONFIG), tpu; --batch-size is per replica")
    run = p.add_argument_group("run directory")
    run.add_argument("--out", help="run directory (default runs/<UTC time>-<method>)")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    run.add_argument("--checkpoint-every", type=int, help=f"steps between checkpoints (default {d.checkpoint_every})")
    run.add_argument("--eval-every", type=int, help=f"steps between evaluations (default {d.eval_every})")
    run.add_argument("--validation-size", type=int, help="unlabeled target images the label-free validators "
                     "score at each evaluation (default: 1000, or all of a smaller target)")
    run.add_argument("--on-collapse", choices=ON_COLLAPSE, help="when the target predictions collapse onto few "
                     "classes (README 'Know without target labels'): warn (default), stop training, or rollback "
                     "(stop; the run's model is the --select choice among the evaluations before the collapse)")
    run.add_argument("--select", choices=(SELECT_LAST, *SCORES), help="which evaluation's EMA weights become "
                     "model.keras: last (default) or the highest score of a label-free validator")
    run.add_argument("--no-report", action="store_true", help="skip the HTML report at the end (RUN/report/)")
    run.add_argument("--config", help="YAML/JSON file of flag values (underscored keys); flags given here win")
    run.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return p


def _default_out(method: str) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{stamp}-{method}")


def parse_method_args(items: list[str]) -> dict[str, str]:
    """`["tau=0.8", ...]` -> `{"tau": "0.8"}`; the method converts the values (`Method.parse_args`)."""
    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--method-arg '{item}': give NAME=VALUE, e.g. --method-arg tau=0.8")
        values[name.strip().replace("-", "_")] = value.strip()
    return values


def prepare_run(cli: dict) -> tuple[Config, RunDir, Path | None]:
    """Resolves the config and the run directory; refuses to clobber or to resume nothing.

    Returns `(config, run directory to write, checkpoint directory to resume from or None)`.
    Only the chief writes `--out`: another worker of a multi-worker run writes to a scratch
    directory of its own (removed by `main` at the end) and, on `--resume`, reads the chief's
    checkpoints without writing to them.
    """
    from tfuda.engine.distribute import is_chief
    from tfuda.engine.run import complete_for_method, keep_method_args

    resume = bool(cli.pop("resume", False))
    config_file = cli.pop("config", None)
    cli.pop("verbose", None)  # output only (tfuda.cli), not part of the run
    if "method_arg" in cli:
        cli["method_args"] = parse_method_args(cli.pop("method_arg"))
    if resume:
        if "out" not in cli:
            raise ConfigError("--resume needs --out RUN_DIR, the run to continue")
        shared = RunDir(cli["out"])
        if not shared.config_file.is_file():
            raise ConfigError(f"--resume: '{shared.path}' has no config.json, so there is no run to continue")
        saved = shared.config()
        config = keep_method_args(resolve(cli, config_file, saved=saved), saved.get("method_args") or {})
        resume_from = shared.checkpoints
    else:
        config = resolve(cli, config_file)
        given = set(cli) | (set(read_config_file(config_file)) if config_file else set())
        config = complete_for_method(config, given)
        config.out = config.out or _default_out(config.method)
        shared = RunDir(config.out)
        if is_chief() and shared.path.exists() and (not shared.path.is_dir() or any(shared.path.iterdir())):
            raise ConfigError(f"--out '{shared.path}' exists and is not empty: choose a new directory, "
                              "or add --resume to continue that run")
        resume_from = None
    run = shared if is_chief() else RunDir(tempfile.mkdtemp(prefix="tfuda-worker-"))
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run.config_file, config.to_dict())
    except OSError as err:
        raise ConfigError(f"cannot write the run directory '{run.path}': {err.strerror or err}") from None
    return config, run, resume_from


@command
def main(argv: list[str] | None = None, prog: str = "python -m tfuda.train") -> int:
    """Entry point; returns the exit status (0 ok, 1 training failed, 2 bad input)."""
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        from tfuda.engine.distribute import is_chief
        from tfuda.engine.loop import Collapsed, NonFiniteLoss
        from tfuda.engine.run import train_run

        config, run, resume_from = prepare_run(vars(args))
        try:
            train_run(config, run, resume_from=resume_from)
        except (NonFiniteLoss, Collapsed) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        finally:
            if not is_chief():  # a scratch directory of this worker's own, never the chief's
                shutil.rmtree(run.path, ignore_errors=True)
        if not is_chief():
            return 0
        if not config.no_report:
            from tfuda.report import write_report

            write_report(str(run.path))
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
