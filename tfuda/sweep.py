"""`python -m tfuda.sweep --config sweep.yaml --out runs/sweep`: train a grid of runs, pick one without target labels.

Every point of the grid (`tfuda.grid`) is one `python -m tfuda.train` run in `OUT/<point name>/`,
its output in `OUT/logs/<point name>.log`. Run it again to resume: finished points are skipped, a
point that was killed resumes from its last checkpoint. The leaderboard (`OUT/leaderboard.csv`
and `.html`, `tfuda.leaderboard`) ranks the runs by a label-free validator and names the chosen
run; `--export DIR` exports it with `python -m export.savedmodel`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import threading
from pathlib import Path

from tfuda.atomic import write_json_atomic
from tfuda.cli import VERBOSE_HELP, HelpFormatter, command, example, run_command
from tfuda.config import ConfigError
from tfuda.grid import Point, read_sweep_file
from tfuda.leaderboard import USABLE, Entry, log_file, read_entry, run_dir, write_leaderboard
from tfuda.validate import SCORES

DEFAULT_RANK_BY = "bnm"
"""The validator a sweep ranks by unless told otherwise: on the built-in pair it ranked runs best of
the target-only validators, with no regret (README, *Which validator to trust*; bench/validators.py)."""


def build_parser(prog: str = "python -m tfuda.sweep") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=HelpFormatter,
        epilog=example("tfuda sweep --config examples/sweep.yaml --out runs/sweep --export exports"))
    p.add_argument("--config", required=True, help="sweep file (YAML/JSON): rank_by, train, grid (see tfuda/grid.py)")
    p.add_argument("--out", required=True, help="sweep directory: one run directory per point, logs, leaderboard")
    p.add_argument("--rank-by", choices=SCORES, help=f"validator to rank by (default: the file's rank_by, else {DEFAULT_RANK_BY})")
    p.add_argument("--jobs", type=int, default=1, help="points trained at once (default 1; each then gets "
                   "cores / jobs TensorFlow threads)")
    p.add_argument("--shard", metavar="I/N", help="train only every N-th point from the I-th (1-based): run "
                   "shards 1/N..N/N on N machines sharing --out, then once without --shard for the leaderboard")
    p.add_argument("--export", metavar="DIR", help="export the chosen run to DIR (python -m export.savedmodel)")
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return p


def train_point(point: Point, out: Path, threads: int | None, verbose: bool) -> str:
    """Trains (or resumes) one point in a child process; returns what was done: `skipped` (it
    has finished before), `resumed` or `trained`."""
    directory, log = run_dir(out, point), log_file(out, point)
    if (directory / "metrics.json").is_file():
        return "skipped"
    if (directory / "config.json").is_file():
        action, argv = "resumed", ["--out", str(directory), "--resume"]
    else:
        flags_file = out / "points" / f"{point.name}.json"
        write_json_atomic(flags_file, point.flags)
        action, argv = "trained", ["--config", str(flags_file), "--out", str(directory)]
    env = dict(os.environ)
    if threads is not None:
        env.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as f:
        subprocess.run([sys.executable, "-m", "tfuda.train", *argv, *(["--verbose"] if verbose else [])],
                       stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, check=False)
    return action


def shard_of(points: list[Point], shard: str | None) -> list[Point]:
    """The points of `--shard I/N` (all without it)."""
    if shard is None:
        return points
    index, _, count = shard.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise ConfigError(f"--shard '{shard}': give I/N with 1 <= I <= N, e.g. --shard 1/4")
    return points[int(index) - 1::int(count)]


def describe(entry: Entry, by: str) -> str:
    if entry.status in USABLE:
        score = entry.scores.get(by)
        return (f"{entry.status}, {by} {score:.4f}" if score is not None else f"{entry.status}, no {by} score") + (
            ", collapse alarm" if entry.alarm else "") + (
            f", {entry.wall_time_s:.0f} s" if entry.wall_time_s is not None else "")
    return f"{entry.status}: {entry.error}" if entry.error else entry.status


def run_sweep(points: list[Point], out: Path, jobs: int, verbose: bool, by: str) -> None:
    """Trains every point (`jobs` at a time), printing one line per point."""
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    lock = threading.Lock()
    done = []

    def one(point: Point) -> None:
        action = train_point(point, out, threads, verbose)
        entry = read_entry(point, out)
        with lock:
            done.append(point)
            print(f"[{len(done)}/{len(points)}] {point.name}: {action}, {describe(entry, by)}", flush=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, points))


def export_chosen(run_dir: Path, export_dir: str, verbose: bool) -> int:
    """Exports the chosen run with `python -m export.savedmodel` (a child process: tfuda does not
    import export); returns its exit status."""
    return subprocess.run([sys.executable, "-m", "export.savedmodel", "--run", str(run_dir), "--out", export_dir,
                           *(["--verbose"] if verbose else [])], stdin=subprocess.DEVNULL, check=False).returncode


@command
def main(argv: list[str] | None = None, prog: str = "python -m tfuda.sweep") -> int:
    """Entry point; returns the exit status (0: a run was chosen (and exported), 1: none was, or
    its export failed, 2: bad sweep file or flags)."""
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        if args.jobs < 1:
            raise ConfigError(f"--jobs must be a positive integer, got {args.jobs}")
        sweep = read_sweep_file(args.config)
        points = shard_of(sweep.points, args.shard)
        by = args.rank_by or sweep.rank_by or DEFAULT_RANK_BY
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot write the sweep directory '{out}': {err.strerror or err}") from None
        print(f"tfuda sweep: {len(points)} runs in {out}" + (f" (shard {args.shard} of {len(sweep.points)})"
              if args.shard else "") + f", ranked by {by}" + (f", {args.jobs} at a time" if args.jobs > 1 else ""),
              flush=True)
        run_sweep(points, out, args.jobs, args.verbose, by)
        if args.shard:
            print(f"shard {args.shard} done; run once without --shard for the leaderboard", flush=True)
            return 0
        entries = [read_entry(p, out) for p in sweep.points]
        chosen, said = write_leaderboard(entries, sweep.grid_keys, by, out)
        failed = sum(e.status not in USABLE for e in entries)
        print(f"leaderboard: {out / 'leaderboard.csv'}, {out / 'leaderboard.html'}"
              + (f" ({failed} of {len(entries)} runs left no model)" if failed else ""), flush=True)
        if chosen is None:
            print("error: no run of the sweep left a model; see the logs in " + str(out / "logs"), file=sys.stderr)
            return 1
        print(f"chosen: {run_dir(out, chosen.point)} ({describe(chosen, by)})", flush=True)
        for line in said.splitlines() if said else ["none (add method: source-only to the grid to learn, without "
                                                    "labels, whether adaptation beat it)"]:
            print(f"verdict: {line}", flush=True)
        if args.export:
            return 0 if export_chosen(run_dir(out, chosen.point), args.export, args.verbose) == 0 else 1
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
