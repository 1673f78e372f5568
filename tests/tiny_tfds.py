"""`tiny_digits`: a TFDS data set built offline from the built-in digits, for tests of `tfds:` sources
in a custom data dir (importing this module registers it with TFDS)."""

import tensorflow_datasets as tfds

from pipelines import builtin


class TinyDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 digits: 60 train and 30 test images, labels '0'..'9'."""

    VERSION = tfds.core.Version("1.0.0")
    SIZES = {"train": 60, "test": 30}

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 1)),
                "label": tfds.features.ClassLabel(names=list(builtin.CLASS_NAMES)),
            }),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in self.SIZES}

    def _generate_examples(self, split):
        images, labels = builtin.load("digits", split)
        for i in range(self.SIZES[split]):
            yield i, {"image": images[i], "label": int(labels[i])}


def prepare(data_dir) -> None:
    """Builds `tiny_digits` into `data_dir` (no download)."""
    TinyDigits(data_dir=str(data_dir)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
