"""A sweep file: the training flags every point shares and the grid of values that differ.

    rank_by: im                  # optional: the validator the leaderboard ranks by
    train:                       # flags of every point (the keys of `python -m tfuda.train --config`)
      steps: 400
      batch_size: 8
    grid:                        # every combination of these values; a list of such mappings
      method: [adamatch, fixmatch]   # is the union of their grids (as scikit-learn's ParameterGrid)
      lr: [0.03, 0.003]
      method_args.tau: [0.8, 0.9]    # a method hyper-parameter (`--method-arg tau=...`)
      seed: [0, 1]

Each point is named by its grid values (`method-adamatch_lr-0.03_seed-0`), so the same point of
an edited grid keeps its run directory; values that read alike as a folder name (`a/b`, `a-b`)
get a hash of their exact values appended, so two points never share a run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
from typing import Any

from tfuda.config import Config, ConfigError, read_config_file
from tfuda.validate import SCORES

METHOD_ARG = "method_args."
"""Prefix of a grid or train key that sets one method hyper-parameter."""
NOT_SETTABLE = ("out", "resume", "config")
"""Training flags a sweep sets itself."""
MAX_NAME = 96


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of a sweep: its directory name, its grid values and every training flag."""

    name: str
    values: dict[str, Any]
    flags: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class SweepFile:
    """A parsed sweep file: `rank_by` (None: the caller's default), its points in grid order."""

    rank_by: str | None
    points: list[Point]

    @property
    def grid_keys(self) -> list[str]:
        return list(dict.fromkeys(key for point in self.points for key in point.values))


def _check_keys(keys, where: str, origin: str) -> None:
    for key in keys:
        name = key[len(METHOD_ARG):] if key.startswith(METHOD_ARG) else key
        if key.startswith(METHOD_ARG) and name:
            continue
        if name not in Config.field_names() or name in NOT_SETTABLE:
            raise ConfigError(f"sweep file '{origin}': unknown training flag '{key}' in {where}; keys are the flags "
                              "of python -m tfuda.train with underscores (e.g. batch_size), or method_args.NAME")


def _flags(values: dict[str, Any]) -> dict[str, Any]:
    """Sweep keys -> `tfuda.train --config` keys: `method_args.X` collected into `method_args`."""
    flags: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith(METHOD_ARG):
            flags.setdefault("method_args", {})[key[len(METHOD_ARG):]] = value
        elif key == "method_args":
            flags.setdefault("method_args", {}).update(value or {})
        else:
            flags[key] = value
    return flags


def point_name(values: dict[str, Any]) -> str:
    """A directory name from grid values: `key-value` pairs joined by `_` (hashed past MAX_NAME)."""
    def short(key: str) -> str:
        return key[len(METHOD_ARG):] if key.startswith(METHOD_ARG) else key

    text = "_".join(f"{short(k)}-{v}" for k, v in values.items()) or "default"
    text = re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-")
    if len(text) > MAX_NAME:
        text = text[:MAX_NAME - 9] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return text


def read_sweep_file(path: str) -> SweepFile:
    """Reads and checks a sweep file; raises ConfigError naming the file and the bad key."""
    content = read_config_file(path)
    unknown = set(content) - {"rank_by", "train", "grid"}
    if unknown:
        raise ConfigError(f"sweep file '{path}': unknown section(s) {', '.join(sorted(unknown))}; "
                          "give rank_by, train and grid")
    rank_by = content.get("rank_by")
    if rank_by is not None and rank_by not in SCORES:
        raise ConfigError(f"sweep file '{path}': rank_by '{rank_by}' is not a validator ({', '.join(SCORES)})")
    shared = content.get("train") or {}
    grids = content.get("grid") or {}
    grids = grids if isinstance(grids, list) else [grids]
    if not isinstance(shared, dict) or not all(isinstance(g, dict) for g in grids):
        raise ConfigError(f"sweep file '{path}': train must be a mapping and grid a mapping (or a list of them)")
    _check_keys(shared, "train", path)
    points: dict[str, Point] = {}
    for grid in grids:
        _check_keys(grid, "grid", path)
        axes = {key: value if isinstance(value, list) else [value] for key, value in grid.items()}
        for combination in itertools.product(*axes.values()):
            values = dict(zip(axes, combination))
            name = point_name(values)
            if name in points and points[name].values != values:
                name = _distinct_name(name, values)
            points.setdefault(name, Point(name, values, _flags({"no_report": True, **shared, **values})))
    return SweepFile(rank_by, list(points.values()))


def _distinct_name(name: str, values: dict[str, Any]) -> str:
    """`name` with a hash of the exact `values`: for grid values that read alike once made a
    folder name (`a/b` and `a-b`, `1` and `"1"`), each point keeps a run directory of its own."""
    digest = hashlib.sha1(repr(sorted((k, type(v).__name__, repr(v)) for k, v in values.items())).encode())
    return f"{name[:MAX_NAME - 9]}-{digest.hexdigest()[:8]}"
