"""Training methods by `--method` name; each is one file with its paper and math."""

from __future__ import annotations

from pipelines.errors import UserError
from tfuda.methods.adamatch import AdaMatch
from tfuda.methods.base import Method
from tfuda.methods.contrastive import Contrastive
from tfuda.methods.dann import DANN
from tfuda.methods.fixmatch import FixMatch
from tfuda.methods.shot import SHOT
from tfuda.methods.source_only import SourceOnly
from tfuda.methods.tent import TENT

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (AdaMatch, FixMatch, DANN, Contrastive, SourceOnly, SHOT, TENT)}


def method_class(name: str) -> type[Method]:
    """The method class registered as `name`; UserError listing the known names otherwise."""
    if name not in METHODS:
        raise UserError(f"unknown --method '{name}'; known methods: {', '.join(METHODS)}")
    return METHODS[name]
