"""`python -m tfuda.predict --run RUN_DIR IMAGES_OR_FOLDERS... [--csv OUT]`: classify image files.

Uses the run's final (EMA) model with the training-time preprocessing, batched in `tf.data`.
Prints one line per image: path, predicted class name, probability.
"""

from __future__ import annotations

import argparse
import csv
import sys

from pipelines.errors import DataError
from pipelines.limits import MAX_IMAGE_PIXELS
from tfuda.cli import VERBOSE_HELP, HelpFormatter, command, example, run_command
from tfuda.rundir import RunDir

BATCH = 64


def predict_files(run: RunDir, paths: list[str]) -> list[tuple[str, str, float]]:
    """Returns `(path, class name, probability)` per readable path, in order."""
    import tensorflow as tf

    from pipelines.folders import decode_file
    from pipelines.transforms import preprocess
    from tfuda.inference import probabilities_fn

    model = run.load_model()
    names = run.class_names()
    size = run.image_size()
    infer = probabilities_fn(model)
    ds = (tf.data.Dataset.from_tensor_slices(paths)
          .map(lambda p: preprocess(decode_file(p), size), num_parallel_calls=tf.data.AUTOTUNE)
          .batch(BATCH).prefetch(tf.data.AUTOTUNE))
    rows = []
    offset = 0
    for images in ds:
        probs = infer(images).numpy()
        for path, p in zip(paths[offset:offset + len(probs)], probs):
            rows.append((path, names[int(p.argmax())], float(p.max())))
        offset += len(probs)
    return rows


@command
def main(argv: list[str] | None = None, prog: str = "python -m tfuda.predict") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=HelpFormatter,
                                     epilog=example("tfuda predict --run runs/demo photos/ --csv predictions.csv"))
    parser.add_argument("--run", required=True, help="run directory made by python -m tfuda.train")
    parser.add_argument("inputs", nargs="+", metavar="IMAGES_OR_FOLDERS")
    parser.add_argument("--csv", help="also write path,class,probability rows to this CSV file")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--strict", action="store_true", help="fail on unreadable files instead of skipping them")
    parser.add_argument("--max-image-pixels", type=int, default=MAX_IMAGE_PIXELS,
                        help="refuse images larger than this, width x height")
    args = parser.parse_args(argv)

    def body() -> int:
        from pipelines.folders import image_files, readable

        run = RunDir(args.run)
        run.check_model()
        paths, _ = readable(image_files(args.inputs), strict=args.strict, where="the inputs",
                            max_pixels=args.max_image_pixels)
        rows = predict_files(run, paths) if paths else []
        for path, name, prob in rows:
            print(f"{path}\t{name}\t{prob:.4f}")
        if args.csv:
            try:
                with open(args.csv, "w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(["path", "class", "probability"])
                    writer.writerows((p, n, f"{q:.6f}") for p, n, q in rows)
            except OSError as err:
                raise DataError(f"cannot write --csv '{args.csv}': {err.strerror or err}") from None
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
