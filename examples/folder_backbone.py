"""Adapt between two image folders with a Keras Applications backbone loaded from a local weights file.

    python examples/folder_backbone.py [--steps 300] [--images N] [--formats savedmodel,tflite,onnx]
                                       [--work /tmp/tfuda-folders]

Your data usually are two folders: labeled source images in one subfolder per class, and
unlabeled target images. Here they are written from the built-in digits (source) and digits-m
(target) so the script runs anywhere; point `--source`/`--target` of `tfuda train` at yours.

The backbone is MobileNetV3-Small from Keras Applications. Without internet, `--weights imagenet`
cannot download, so tfuda takes a local `.weights.h5` file of the backbone: this script saves
one (random weights, a stand-in for the ImageNet file you downloaded elsewhere with
`keras.applications.MobileNetV3Small(include_top=False, weights="imagenet", pooling="avg")
.save_weights(...)`), trains with it, then exports and verifies every format. At 300 steps from
random weights it is a smoke run, not a result: a real backbone on your images is the point.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
from PIL import Image

from pipelines import builtin


def write_folder(spec: str, split: str, root: Path, labeled: bool, limit: int | None = None) -> Path:
    """Writes (the first `limit` images of) a built-in data set as PNG files: one subfolder per
    class, or loose when unlabeled."""
    images, labels = builtin.load(spec, split)
    for i, (image, label) in enumerate(zip(images[:limit], labels[:limit])):
        folder = root / str(label) if labeled else root
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(folder / f"{i:05d}.png")
    return root


def save_backbone_weights(path: Path, image_size: int) -> Path:
    """The backbone's weights as a local file (what `--weights FILE` reads)."""
    backbone = keras.applications.MobileNetV3Small(include_top=False, weights=None, pooling="avg",
                                                   input_shape=(image_size, image_size, 3))
    backbone.save_weights(path)
    return path


def tfuda(*args: str) -> None:
    """Runs a `tfuda` command as you would in a shell (`python -m tfuda` is the same command)."""
    subprocess.run([sys.executable, "-m", "tfuda", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--images", type=int, help="images written per folder (default: all)")
    parser.add_argument("--formats", default="savedmodel,tflite,onnx", help="export formats")
    parser.add_argument("--work", help="where folders, weights, run and exports go (default: a temporary dir)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="tfuda-folders-"))
    source = write_folder("digits", "train", work / "studio", labeled=True, limit=args.images)
    target = write_folder("digits-m", "train", work / "phone", labeled=False, limit=args.images)
    target_test = write_folder("digits-m", "test", work / "phone_test", labeled=True, limit=args.images)
    weights = save_backbone_weights(work / "mobilenetv3_small.weights.h5", image_size=32)
    print(f"folders: {source} (labeled, {len(list(source.glob('*/*.png')))} images), {target} (unlabeled, "
          f"{len(list(target.glob('*.png')))} images); backbone weights: {weights}", flush=True)

    tfuda("train", "--source", str(source), "--target", str(target), "--eval-target", str(target_test),
          "--model", "mobilenetv3-small", "--weights", str(weights), "--image-size", "32",
          "--steps", str(args.steps), "--eval-every", str(max(1, args.steps // 2)), "--no-report",
          "--out", str(work / "run"))
    tfuda("export", "--run", str(work / "run"), "--out", str(work / "exports"), "--formats", args.formats,
          "--quantize", "float32",
          "--max-eval-images", "100", "--no-report")
    print(f"run: {work / 'run'}; exports: {work / 'exports'}")


if __name__ == "__main__":
    main()
