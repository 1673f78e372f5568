"""Limits on input that protect the process's memory (no TensorFlow import: CLIs read them for --help)."""

MAX_IMAGE_PIXELS = 100_000_000
"""Default cap on an image's width x height (`--max-image-pixels`): decoding one costs up to 4
bytes a pixel, once per parallel decoder, so a 30,000 x 30,000 file would take gigabytes."""

MEMORY_BUDGET = 2 * 1024**3
"""Bytes of uint8 images one data set may keep in memory (`Source.preprocessed`, `DatasetSource`)."""
