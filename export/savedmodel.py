"""`python -m export.savedmodel --run RUN_DIR --out EXPORT_DIR`: export and verify a trained run.

Writes a new version of the SavedModel (TF Serving layout), the TFLite files and the ONNX file
(see `export.layout`), checks each in its own runtime against the Keras model on the
evaluation set, and publishes the version only if every artifact agrees well enough.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pipelines.errors import UserError
from tfuda.cli import VERBOSE_HELP, command, run_command

FORMATS = ("savedmodel", "tflite", "onnx")
TREE_OF = {"savedmodel": "serving", "tflite": "tflite", "onnx": "onnx"}
CALIBRATION_IMAGES = 200
MAX_EVAL_IMAGES = 2000


class ExportFailed(Exception):
    """An artifact failed verification; nothing was published."""


def _csv_choice(value: str, choices: tuple[str, ...], flag: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip() and v.strip() != "none"]
    unknown = [v for v in items if v not in choices]
    if unknown:
        raise UserError(f"{flag}: unknown value(s) {', '.join(unknown)}; choose from {', '.join(choices)}")
    return items


def build_parser() -> argparse.ArgumentParser:
    from export.tflite import PRECISIONS

    p = argparse.ArgumentParser(prog="python -m export.savedmodel", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", required=True, help="run directory made by python -m tfuda.train")
    p.add_argument("--out", default="exports", help="export directory")
    p.add_argument("--name", default="tfuda", help="model name (TF Serving MODEL_NAME)")
    p.add_argument("--version", default="auto", help="version number, or auto (highest existing + 1)")
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing --version")
    p.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {', '.join(FORMATS)}")
    p.add_argument("--quantize", default="float32,int8",
                   help=f"TFLite precisions, comma-separated subset of {', '.join(PRECISIONS)}")
    p.add_argument("--calibration", help="int8 calibration images (default: the run's --target)")
    p.add_argument("--eval", help="evaluation set (default: the run's target evaluation set)")
    p.add_argument("--max-eval-images", type=int, default=MAX_EVAL_IMAGES, help="images used for verification")
    p.add_argument("--min-agreement", type=float, default=0.99, help="float artifacts: min top-1 agreement with Keras")
    p.add_argument("--min-agreement-int8", type=float, default=0.97, help="int8 artifacts: min top-1 agreement")
    p.add_argument("--strict", action="store_true", help="fail on unreadable image files in --eval/--calibration")
    p.add_argument("--no-report", action="store_true", help="do not remake the run's HTML report with this export")
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return p


def _images(source, size: int, limit: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Up to `limit` preprocessed uint8 images `[N, S, S, 3]` of a source, and labels if it has any."""
    from pipelines.feeds import first_images

    images, labels = first_images(source, limit, size)
    return images, (labels if source.info.labeled else None)


def export_data(run, args: argparse.Namespace, size: int, calibrate: bool):
    """`(eval spec, eval images, eval labels or None, calibration source or None)` of an export.

    The run's own data (its target evaluation set, its target for int8 calibration) is opened
    as training opened it (`pipelines.run_data.RunData`: same defaults, TFDS data dir, strictness);
    `--eval`/`--calibration` replace them.
    """
    from pipelines.run_data import RunData

    config = run.config()
    data = RunData({**config, "strict": True} if args.strict else config, run.class_names(), f"run '{run.path}'")
    evaluation = data.options.open(args.eval, "--eval") if args.eval else (data.eval_target or data.target)
    images, labels = _images(evaluation, size, args.max_eval_images)
    calibration = None
    if calibrate:
        calibration = data.options.open(args.calibration, "--calibration") if args.calibration else data.target
    return evaluation.info.spec, images, labels, calibration


def _checked_formats(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from export.tflite import PRECISIONS

    formats = _csv_choice(args.formats, FORMATS, "--formats")
    precisions = _csv_choice(args.quantize, PRECISIONS, "--quantize")
    if not formats:
        raise UserError("--formats is empty: name at least one of " + ", ".join(FORMATS))
    if "tflite" in formats and not precisions:
        raise UserError("--quantize is empty but --formats includes tflite")
    return formats, (precisions if "tflite" in formats else [])


def write_artifacts(model, class_names: list[str], formats: list[str], precisions: list[str],
                    calibration_images: np.ndarray | None, stage) -> list[tuple]:
    """Writes every requested artifact into the staging area; returns `(format, precision, path,
    runner)` per artifact, a runner being images uint8 `[B, S, S, 3]` -> probabilities."""
    import tensorflow as tf

    from export import onnx_model, serving, tflite
    from tfuda.atomic import write_json_atomic

    size = serving.image_size_of(model)
    device_dir = stage.dir / "device"
    serving.write_device_savedmodel(model, device_dir)
    artifacts = []
    if "savedmodel" in formats:
        path = stage.path("serving")
        serving.write_serving_savedmodel(model, class_names, path)
        fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        artifacts.append(("savedmodel", "float32", path,
                          lambda x, fn=fn: fn(images=tf.constant(x))["probabilities"].numpy()))
    if "tflite" in formats:
        folder = stage.path("tflite")
        files = {}
        for precision in precisions:
            target = folder / f"model.{precision}.tflite"
            batches = (lambda: (calibration_images[i:i + 1] for i in range(len(calibration_images)))
                       if precision == "int8" else None)
            target.write_bytes(tflite.convert(device_dir, precision, batches))
            if target.stat().st_size < tflite.MIN_BYTES:
                raise ExportFailed(f"{target.name} is {target.stat().st_size} bytes: no weights were converted")
            files[precision] = target.name
            artifacts.append(("tflite", precision, target, tflite.TFLiteRunner(target)))
        write_json_atomic(folder / "metadata.json", _metadata(class_names, size, files))
    if "onnx" in formats:
        folder = stage.path("onnx")
        target = folder / "model.onnx"
        onnx_model.convert(device_dir, target)
        write_json_atomic(folder / "metadata.json", _metadata(class_names, size, {"float32": target.name}))
        artifacts.append(("onnx", "float32", target, onnx_model.ONNXRunner(target)))
    return artifacts


def verify_artifacts(artifacts: list[tuple], args: argparse.Namespace, images: np.ndarray,
                     labels: np.ndarray | None, keras_probs: np.ndarray) -> list:
    """Runs each artifact on the evaluation images against the Keras model's probabilities."""
    from export import verify

    results = []
    for fmt, precision, path, runner in artifacts:
        threshold = args.min_agreement_int8 if precision == "int8" else args.min_agreement
        try:
            results.append(verify.check_artifact(str(path), fmt, precision, runner, images, labels,
                                                 keras_probs, threshold))
        except ValueError as err:
            raise ExportFailed(str(err)) from None
    return results


def publish(stage, layout, version: int, formats: list[str], report: dict, overwrite: bool) -> None:
    """Renames the staged trees into place, then writes the report with the published paths."""
    from tfuda.atomic import write_json_atomic

    published = stage.publish(version, [TREE_OF[f] for f in formats], overwrite)
    for entry in report["artifacts"]:
        staged = Path(entry["path"])
        tree = staged.relative_to(stage.dir).parts[0]
        entry["path"] = str(published[tree] / staged.relative_to(stage.dir / tree))
    write_json_atomic(layout.report_file(version), report)


def export_run(args: argparse.Namespace) -> dict:
    """Exports, verifies and publishes; returns the report. Raises ExportFailed or UserError."""
    from export import verify
    from export.layout import ExportLayout, Staging
    from export.serving import image_size_of
    from tfuda.atomic import write_json_atomic
    from tfuda.inference import probabilities_fn
    from tfuda.rundir import RunDir

    formats, precisions = _checked_formats(args)
    run = RunDir(args.run)
    model = run.load_model()
    size = image_size_of(model)
    layout = ExportLayout(args.out, args.name)
    layout.check_writable()
    version = layout.resolve_version(args.version, args.overwrite)
    eval_spec, images, labels, calibration = export_data(run, args, size, calibrate="int8" in precisions)
    calibration_images = _images(calibration, size, CALIBRATION_IMAGES)[0] if calibration else None
    keras_probs = verify.predict_all(lambda x: probabilities_fn(model)(x).numpy(), images)
    print(f"exporting {args.run} as '{args.name}' version {version}: {', '.join(formats)}"
          + (f" (tflite: {', '.join(precisions)})" if precisions else ""), flush=True)
    with Staging(layout) as stage:
        artifacts = write_artifacts(model, run.class_names(), formats, precisions, calibration_images, stage)
        results = verify_artifacts(artifacts, args, images, labels, keras_probs)
        report = {
            "version": version, "name": args.name, "run": str(args.run), "eval_set": eval_spec,
            "num_images": int(len(images)),
            "keras": {"accuracy": verify.accuracy(keras_probs, labels),
                      "latency_ms_p50": verify.latency_ms(lambda x: model(x.astype(np.float32), training=False),
                                                          images[:1])},
            "artifacts": [vars(r) for r in results],
            "passed": all(r.passed for r in results),
        }
        if not report["passed"]:
            failed = layout.report_file(version).with_suffix(".failed.json")
            write_json_atomic(failed, report)
            print(verify.format_table(report))
            bad = [f"{r.format} {r.precision} ({r.agreement:.4f} < {r.min_agreement})" for r in results if not r.passed]
            raise ExportFailed(f"agreement with the Keras model too low for {', '.join(bad)}; "
                               f"version {version} was not published (report: {failed})")
        publish(stage, layout, version, formats, report, args.overwrite)
    print(verify.format_table(report))
    print(f"published version {version} under {layout.root} (report: {layout.report_file(version)})")
    if not args.no_report:
        from tfuda.report import write_report

        write_report(str(run.path), export_report=str(layout.report_file(version)))
    return report


def _metadata(class_names: list[str], size: int, files: dict[str, str]) -> dict:
    from export.serving import INPUT_KEY, OUTPUT_KEYS

    return {
        "class_names": class_names,
        "files": files,
        "input": {"name": INPUT_KEY, "dtype": "uint8", "shape": [-1, size, size, 3],
                  "preprocessing": f"RGB; resize with padding (keep aspect ratio) to {size}x{size}; "
                                   "raw 0..255 pixel values, no normalization (the model scales inside)"},
        "outputs": {"probabilities": "float32 [batch, classes]", "classes": "int64 [batch]",
                    "logits": "float32 [batch, classes]"},
        "output_names": list(OUTPUT_KEYS),
    }


@command
def main(argv: list[str] | None = None) -> int:
    """Entry point; exit status 0 published, 1 verification failed, 2 bad input."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        try:
            export_run(args)
        except ExportFailed as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
