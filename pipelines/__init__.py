"""Data in: sources, batched image transforms and per-method training feeds.

This package knows no model, no method and no artifact; `tfuda` and `export` build on it.

Python API (README "Python API"):

    open_source(spec) -> Source              a folder, npz:PATH, tfds:NAME[:SPLIT] or a built-in
    from_dataset(dataset, class_names) -> Source   your own tf.data.Dataset
    Source, SourceInfo                       an opened data set and what it holds
    BUILTINS, SUITE                          the built-in data sets and the suite of shifts
    DataError                                bad data (a ValueError)
"""

from pipelines.lazy import lazy_module

__all__ = ["open_source", "from_dataset", "Source", "SourceInfo", "BUILTINS", "SUITE", "DataError"]

__getattr__, __dir__ = lazy_module(__name__, {
    "open_source": "pipelines.sources", "Source": "pipelines.sources", "SourceInfo": "pipelines.sources",
    "from_dataset": "pipelines.user_data", "BUILTINS": "pipelines.builtin", "SUITE": "pipelines.builtin",
    "DataError": "pipelines.errors",
})
