"""`python -m export.savedmodel --run RUN_DIR --out EXPORT_DIR`: export and verify a trained run.

Writes a new version of the SavedModel (TF Serving layout), the TFLite files and the ONNX file
(see `export.layout`), checks each in its own runtime against the Keras model on the
evaluation set, and publishes the version only if every artifact agrees well enough.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from pipelines.errors import UserError
from tfuda.cli import VERBOSE_HELP, HelpFormatter, command, example, run_command

if TYPE_CHECKING:  # heavy imports, only for the annotations
    import keras

    from tfuda.api import Data

FORMATS = ("savedmodel", "tflite", "onnx")
TREE_OF = {"savedmodel": "serving", "tflite": "tflite", "onnx": "onnx"}
CALIBRATION_IMAGES = 200
MAX_EVAL_IMAGES = 2000


class ExportFailed(Exception):
    """An artifact failed verification; nothing was published."""


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip() and v.strip() != "none"]


def build_parser(prog: str = "python -m export.savedmodel") -> argparse.ArgumentParser:
    from export.tflite import PRECISIONS

    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=HelpFormatter,
                                epilog=example("tfuda export --run runs/demo --out exports",
                                               "tfuda export --run runs/demo --out exports --formats tflite "
                                               "--quantize int8"))
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


def export_data(run, args: argparse.Namespace, calibrate: bool):
    """`(evaluation source, calibration source or None)` of exporting a run.

    The run's own data (its target evaluation set, its target for int8 calibration) is opened
    as training opened it (`pipelines.run_data.RunData`: same defaults, TFDS data dir, strictness);
    `--eval`/`--calibration` replace them.
    """
    from pipelines.run_data import RunData

    config = run.config()
    data = RunData({**config, "strict": True} if args.strict else config, run.class_names(), f"run '{run.path}'")
    evaluation = data.options.open(args.eval, "--eval") if args.eval else (data.eval_target or data.target)
    calibration = None
    if calibrate:
        calibration = data.options.open(args.calibration, "--calibration") if args.calibration else data.target
    return evaluation, calibration


def checked_formats(formats: Sequence[str], quantize: Sequence[str]) -> tuple[list[str], list[str]]:
    """`(formats, TFLite precisions)` checked against `FORMATS` and `export.tflite.PRECISIONS`."""
    from export.tflite import PRECISIONS

    for values, choices, what in ((formats, FORMATS, "formats"), (quantize, PRECISIONS, "quantize")):
        unknown = [v for v in values if v not in choices]
        if unknown:
            raise UserError(f"--{what}: unknown value(s) {', '.join(unknown)}; choose from {', '.join(choices)}")
    if not formats:
        raise UserError("--formats is empty: name at least one of " + ", ".join(FORMATS))
    if "tflite" in formats and not quantize:
        raise UserError("--quantize is empty but --formats includes tflite")
    return list(formats), (list(quantize) if "tflite" in formats else [])


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


def verify_artifacts(artifacts: list[tuple], images: np.ndarray, labels: np.ndarray | None, keras_probs: np.ndarray,
                     min_agreement: float, min_agreement_int8: float) -> list:
    """Runs each artifact on the evaluation images against the Keras model's probabilities."""
    from export import verify

    results = []
    for fmt, precision, path, runner in artifacts:
        threshold = min_agreement_int8 if precision == "int8" else min_agreement
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


def export_model(model: keras.Model, class_names: Sequence[str], out: str | Path, *, eval_data: Data,
                 calibration: Data = None,
                 name: str = "tfuda", version: str | int = "auto", overwrite: bool = False,
                 formats: Sequence[str] = FORMATS, quantize: Sequence[str] = ("float32", "int8"),
                 max_eval_images: int = MAX_EVAL_IMAGES, min_agreement: float = 0.99,
                 min_agreement_int8: float = 0.97, run: str | None = None, verbose: bool = True) -> dict:
    """Exports a classifier, verifies every artifact against it, and publishes the version.

    Writes `out/serving/NAME/VERSION` (SavedModel, TF Serving layout, preprocessing inside),
    `out/tflite/NAME/VERSION` and `out/onnx/NAME/VERSION` (see `export.layout`); each artifact
    runs in its own runtime on `eval_data` and must agree with the Keras model on at least
    `min_agreement` (int8: `min_agreement_int8`) of the images and, for a float artifact, in
    every probability within `export.verify.MAX_PROB_DIFF`, or nothing is published.

    Args:
      model: images float32 `[B, S, S, 3]` (0..255) -> logits or probabilities (any
        classifier `tfuda.as_classifier` accepts).
      class_names: the classes in output order (served with the predictions).
      out: the export directory.
      eval_data: images to verify on (labels, if any, give each artifact's accuracy): a
        `tf.data.Dataset`, a `pipelines.Source` or a spec.
      calibration: images whose value ranges set int8 quantization (default: `eval_data`).
      name: the model name (TF Serving's MODEL_NAME).
      version: the version number, or `auto` (highest existing + 1).
      overwrite: allow replacing an existing version.
      formats: a subset of `FORMATS`.
      quantize: TFLite precisions (`export.tflite.PRECISIONS`).
      max_eval_images: images of `eval_data` used.
      run: the run directory the model came from, recorded in the report.
      verbose: print the table.

    Returns:
      the verification report (`export.verify`), also written to `out/reports/NAME/VERSION.json`.

    Raises:
      ExportFailed: an artifact disagreed too often or gave non-finite outputs (nothing published).
      UserError (a ValueError): bad arguments or data.
    """
    from export import verify
    from export.layout import ExportLayout, Staging
    from export.serving import image_size_of
    from tfuda.api import as_source
    from tfuda.atomic import write_json_atomic
    from tfuda.inference import predict_batches, probabilities_fn
    from tfuda.models.foreign import as_classifier

    formats, precisions = checked_formats(formats, quantize)
    model = as_classifier(model)
    class_names = list(class_names)
    if len(class_names) != int(model.output_shape[-1]):
        raise UserError(f"class_names: {len(class_names)} names for a model with {model.output_shape[-1]} outputs")
    size = image_size_of(model)
    layout = ExportLayout(str(out), name)
    layout.check_writable()
    version = layout.resolve_version(str(version), overwrite)
    evaluation = as_source(eval_data, "eval_data", class_names)
    if evaluation is None:
        raise UserError("eval_data: give images to verify the exported artifacts on")
    images, labels = _images(evaluation, size, max_eval_images)
    calibration_images = None
    if "int8" in precisions:
        calibration_images = _images(as_source(calibration, "calibration", class_names) or evaluation, size,
                                     CALIBRATION_IMAGES)[0]
    keras_probs = predict_batches(lambda x: probabilities_fn(model)(x).numpy(), images, verify.PREDICT_BATCH)
    say = print if verbose else (lambda *a, **k: None)
    say(f"exporting {run or model.name} as '{name}' version {version}: {', '.join(formats)}"
        + (f" (tflite: {', '.join(precisions)})" if precisions else ""), flush=True)
    with Staging(layout) as stage:
        artifacts = write_artifacts(model, class_names, formats, precisions, calibration_images, stage)
        results = verify_artifacts(artifacts, images, labels, keras_probs, min_agreement, min_agreement_int8)
        report = {
            "version": version, "name": name, "run": run, "eval_set": evaluation.info.spec,
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
            say(verify.format_table(report))
            bad = [f"{r.format} {r.precision} ({verify.why_failed(r)})" for r in results if not r.passed]
            raise ExportFailed(f"artifacts differ from the Keras model: {'; '.join(bad)}; "
                               f"version {version} was not published (report: {failed})")
        publish(stage, layout, version, formats, report, overwrite)
    say(verify.format_table(report))
    say(f"published version {version} under {layout.root} (report: {layout.report_file(version)})")
    return report


def export_run(args: argparse.Namespace) -> dict:
    """The command line: exports a run directory's model (`export_model`) with the run's data,
    then remakes the run's report with the export. Raises ExportFailed or UserError."""
    from tfuda.rundir import RunDir

    formats, precisions = checked_formats(_csv(args.formats), _csv(args.quantize))
    run = RunDir(args.run)
    model = run.load_model()
    evaluation, calibration = export_data(run, args, calibrate="int8" in precisions)
    report = export_model(model, run.class_names(), args.out, eval_data=evaluation, calibration=calibration,
                          name=args.name, version=args.version, overwrite=args.overwrite, formats=formats,
                          quantize=precisions, max_eval_images=args.max_eval_images,
                          min_agreement=args.min_agreement, min_agreement_int8=args.min_agreement_int8,
                          run=str(args.run))
    if not args.no_report:
        from export.layout import ExportLayout
        from tfuda.report import write_report

        write_report(str(run.path), export_report=str(ExportLayout(args.out, args.name).report_file(report["version"])),
                     plots=False)
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
def main(argv: list[str] | None = None, prog: str = "python -m export.savedmodel") -> int:
    """Entry point; exit status 0 published, 1 verification failed, 2 bad input."""
    args = build_parser(prog).parse_args(argv)

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
