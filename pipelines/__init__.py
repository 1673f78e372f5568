"""Data in: sources, batched image transforms and per-method training feeds.

This package knows no model, no method and no artifact; `tfuda` and `export` build on it.
"""
