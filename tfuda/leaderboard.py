"""A sweep's leaderboard: its runs ranked by a label-free validator, as CSV and an HTML page.

A run ranks by the score its model got from the chosen validator (`metrics.json` `validators`).
Runs whose model raised the collapse alarm rank after every run that did not, then runs without
a score (failed, collapsed, not run). Target accuracy is a column only when the runs have a
labeled target evaluation set; it never decides the order.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
from pathlib import Path
from typing import Any

from tfuda.atomic import write_text_atomic
from tfuda.config import Config
from tfuda.grid import Point
from tfuda.report import fmt_cell, html_table
from tfuda.validate import ESTIMATE, SCORES
from tfuda.validate.alarm import model_alarmed

USABLE = ("completed", "rolled_back")
"""Statuses of a run that left a model."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One point's outcome, read from its run directory (and its log when it left no metrics)."""

    point: Point
    status: str
    scores: dict[str, float]
    target_accuracy: float | None = None
    alarm: bool = False
    steps: int | None = None
    wall_time_s: float | None = None
    error: str | None = None
    environment: dict[str, str | None] | None = None
    """What the run ran on (`metrics.json` `environment`; None for runs that predate it)."""

    def score(self, by: str) -> float | None:
        """This run's `by` score, or None when it left no model or was not scored by `by`."""
        return self.scores.get(by) if self.status in USABLE else None

    @property
    def source_only(self) -> bool:
        return self.point.flags.get("method", Config.method) == "source-only"


def run_dir(out: Path, point: Point) -> Path:
    """The run directory of `point` in the sweep directory `out`."""
    return out / point.name


def log_file(out: Path, point: Point) -> Path:
    """The output of `point`'s training command in the sweep directory `out`."""
    return out / "logs" / f"{point.name}.log"


def last_error_line(log: Path) -> str | None:
    """The last `error:` line a point's command printed, without the prefix."""
    if not log.is_file():
        return None
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("error:")]
    return lines[-1].removeprefix("error:").strip() if lines else None


def read_entry(point: Point, out: Path) -> Entry:
    """The outcome of `point` of the sweep in `out`: its run's `metrics.json` if the run wrote one,
    else `failed` (with the log's last `error:` line) when the point was run, else `not run`."""
    metrics_file, log = run_dir(out, point) / "metrics.json", log_file(out, point)
    if not metrics_file.is_file():
        status = "failed" if log.is_file() else "not run"
        return Entry(point, status, {}, error=last_error_line(log) or ("killed or interrupted" if log.is_file() else None))
    metrics: dict[str, Any] = json.loads(metrics_file.read_text())
    status = metrics["status"]
    if status not in USABLE:
        return Entry(point, status, {}, steps=metrics.get("steps"), error=metrics.get("error"))
    return Entry(point, status, metrics.get("validators") or {}, metrics.get("target_accuracy"),
                 alarm=model_alarmed(metrics),
                 steps=metrics.get("steps"), wall_time_s=metrics.get("wall_time_s"),
                 environment=metrics.get("environment"))


def helped(estimate: float, baseline_estimate: float, alarmed: bool) -> bool:
    """The verdict by estimated target accuracy: an adapted model helped when its estimate is above
    the baseline's and it raised no collapse alarm (collapsed predictions fool the estimate,
    docs/benchmarks.md)."""
    return estimate > baseline_estimate and not alarmed


def rank(entries: list[Entry], by: str) -> list[Entry]:
    """Entries best first: scored runs without an alarm by `by` (higher first), then alarmed
    scored runs, then the rest in grid order."""
    scored = [e for e in entries if e.score(by) is not None]
    rest = [e for e in entries if e.score(by) is None]
    return sorted(scored, key=lambda e: (e.alarm, -e.scores[by])) + rest


def domains(entry: Entry) -> tuple[str, str]:
    """The run's `(source, target)` data sets."""
    return entry.point.flags.get("source", Config.source), entry.point.flags.get("target", Config.target)


def pair_verdict(usable: list[Entry], by: str) -> str | None:
    """`verdict` for the ranked, scored runs of one domain pair: by estimated target accuracy
    when both compared runs have it (the validators' ranking can favour a confidently wrong
    model), never `helped` when every adapted model raised the collapse alarm (its estimate is
    then unreliable); else by the ranking."""
    baseline = next((e for e in usable if e.source_only), None)
    adapted = next((e for e in usable if not e.source_only), None)
    if baseline is None or adapted is None:
        return None
    alarmed = " (whose models raised the collapse alarm)" if all(e.alarm for e in usable if not e.source_only) else ""
    ours, theirs = adapted.score(ESTIMATE), baseline.score(ESTIMATE)
    if None not in (ours, theirs):
        first = f"ranked first of the adapted runs by {by}" if by != ESTIMATE else "the best adapted run"
        said = "helped" if helped(ours, theirs, adapted.alarm) else "did not help"
        return (f"adaptation {said}: est. target accuracy {ours:.2f} for {adapted.point.name} ({first}) vs "
                f"{theirs:.2f} for source-only {baseline.point.name}{alarmed}")
    if usable.index(adapted) < usable.index(baseline):
        return (f"adaptation helped by {by}: {adapted.point.name} ({adapted.scores[by]:.4f}) ranks above the best "
                f"source-only run {baseline.point.name} ({baseline.scores[by]:.4f})")
    return (f"adaptation did not help by {by}: the best source-only run {baseline.point.name} "
            f"({baseline.scores[by]:.4f}) ranks above every adapted run{alarmed}")


def verdict(ranked: list[Entry], by: str) -> str | None:
    """Did adaptation help, by the label-free ranking? For each domain pair of the sweep, compares
    its best adapted run with its best source-only run; runs trained on their own target
    (source = target: labeled, not adapted) take no part. One line per pair that has both kinds
    (prefixed `SOURCE → TARGET: ` when the sweep has several pairs); None when no pair has both."""
    usable = [e for e in ranked if e.score(by) is not None and domains(e)[0] != domains(e)[1]]
    pairs = list(dict.fromkeys(domains(e) for e in usable))
    said = {pair: pair_verdict([e for e in usable if domains(e) == pair], by) for pair in pairs}
    lines = [(f"{source} → {target}: " if len(pairs) > 1 else "") + text
             for (source, target), text in said.items() if text is not None]
    return "\n".join(lines) or None


def columns(entries: list[Entry], grid_keys: list[str], by: str) -> list[str]:
    """Leaderboard columns: target accuracy only when some run has it."""
    accuracy = ["target_accuracy"] if any(e.target_accuracy is not None for e in entries) else []
    others = [name for name in SCORES if name != by and any(name in e.scores for e in entries)]
    return ["rank", "run", "status", "collapse_alarm", *grid_keys, by, *others, *accuracy, "steps",
            "wall_time_s", "error"]


def rows(ranked: list[Entry], grid_keys: list[str], by: str) -> list[dict[str, Any]]:
    """One dict per entry with the keys of `columns`; rank is empty for a run without a score."""
    out = []
    for position, entry in enumerate(ranked, 1):
        out.append({"rank": position if entry.score(by) is not None else "", "run": entry.point.name, "status": entry.status,
                    "collapse_alarm": entry.alarm, **{k: entry.point.values.get(k, "") for k in grid_keys},
                    **entry.scores, "target_accuracy": entry.target_accuracy, "steps": entry.steps,
                    "wall_time_s": entry.wall_time_s, "error": entry.error or ""})
    return out


def write_leaderboard(entries: list[Entry], grid_keys: list[str], by: str, out: Path) -> tuple[Entry | None, str | None]:
    """Writes `out/leaderboard.csv` and `out/leaderboard.html`; returns the chosen (first-ranked
    usable) entry, or None when no run left a model, and the `verdict` on adaptation."""
    ranked = rank(entries, by)
    header = columns(entries, grid_keys, by)
    table = rows(ranked, grid_keys, by)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in table)
    write_text_atomic(out / "leaderboard.csv", buffer.getvalue())
    chosen = ranked[0] if ranked and ranked[0].score(by) is not None else None
    cells = [tuple(fmt_cell(row.get(key)) for key in header) for row in table]
    if chosen is not None:
        cells[0] = tuple(f"<b>{cell}</b>" for cell in cells[0])
    choice = (f"chosen: <b>{html.escape(chosen.point.name)}</b> (highest {html.escape(by)}"
              f"{', every run raised the collapse alarm' if chosen.alarm else ''})" if chosen
              else "no run left a model")
    said = verdict(ranked, by)
    helped = "".join(f" <b>{html.escape(line[:1].upper() + line[1:])}</b>." for line in said.splitlines()) if said else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>tfuda sweep: {html.escape(str(out))}</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head>
<body><h1>tfuda sweep: {html.escape(str(out))}</h1>
<p>{len(entries)} runs ranked by the label-free validator <b>{html.escape(by)}</b> (higher is better; runs whose
model raised the collapse alarm come after the others). {choice}.{helped}
Target accuracy, where shown, comes from labeled evaluation data and played no part in the order.</p>
{html_table(cells, tuple(header))}</body></html>"""
    write_text_atomic(out / "leaderboard.html", page)
    return chosen, said
