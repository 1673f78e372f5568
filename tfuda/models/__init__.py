"""Classifier models by name: an embedding backbone plus a linear head, inputs float 0..255."""

from tfuda.models.registry import MODELS, build_model, embedding_model

__all__ = ["MODELS", "build_model", "embedding_model"]
