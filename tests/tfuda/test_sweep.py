"""`python -m tfuda.sweep`: the grid, the ranking, resuming, exporting the chosen run, bad sweep files."""

import csv
import json

import pytest

from tfuda.grid import Point, point_name, read_sweep_file
from tfuda.leaderboard import Entry, rank, verdict

TINY = """\
train:
  steps: 2
  batch_size: 4
  eval_every: 2
  checkpoint_every: 2
  validation_size: 32
grid:
  - method: [source-only, adamatch]
  - method: fixmatch
    method_args.tau: high
"""


def write(tmp_path, text, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_grid_is_the_union_of_its_products_with_method_args(tmp_path):
    sweep = read_sweep_file(write(tmp_path, """\
rank_by: bnm
train: {steps: 10, method_args: {lambda_u: 2.0}}
grid:
  - {method: adamatch, lr: [0.03, 0.01], method_args.tau: [0.8, 0.9]}
  - {method: [dann, adamatch], lr: 0.03}
"""))
    assert sweep.rank_by == "bnm"
    names = [p.name for p in sweep.points]
    # 2 x 2 from the first grid, then dann; adamatch with lr 0.03 alone is a new point (no tau key)
    assert names == ["method-adamatch_lr-0.03_tau-0.8", "method-adamatch_lr-0.03_tau-0.9",
                     "method-adamatch_lr-0.01_tau-0.8", "method-adamatch_lr-0.01_tau-0.9",
                     "method-dann_lr-0.03", "method-adamatch_lr-0.03"]
    first = sweep.points[0].flags
    assert first == {"no_report": True, "steps": 10, "method": "adamatch", "lr": 0.03,
                     "method_args": {"lambda_u": 2.0, "tau": 0.8}}
    assert sweep.grid_keys == ["method", "lr", "method_args.tau"]


def test_values_that_read_alike_as_names_stay_separate_points(tmp_path):
    sweep = read_sweep_file(write(tmp_path, """\
grid:
  target: [data/a b, data/a-b, "data/a/b"]
  seed: [1, "1"]
"""))
    assert len(sweep.points) == 6
    assert len({p.name for p in sweep.points}) == 6
    assert {(p.flags["target"], repr(p.flags["seed"])) for p in sweep.points} == {
        (t, s) for t in ("data/a b", "data/a-b", "data/a/b") for s in ("1", "'1'")}
    again = read_sweep_file(write(tmp_path, "grid:\n  target: [data/a b, data/a-b, data/a/b]\n  seed: [1, '1']\n"))
    assert [p.name for p in again.points] == [p.name for p in sweep.points]  # stable across reads


def test_point_names_are_safe_and_bounded():
    assert point_name({"source": "data/my photos", "seed": 1}) == "source-data-my-photos_seed-1"
    long = point_name({"target": "x" * 300})
    assert len(long) <= 96 and long != point_name({"target": "x" * 299})


@pytest.mark.parametrize("text, message", [
    ("grid: {method: [adamatch], batchsize: [8]}", "unknown training flag 'batchsize' in grid"),
    ("train: {out: runs/x}", "unknown training flag 'out' in train"),
    ("grids: {method: [adamatch]}", "unknown section(s) grids"),
    ("rank_by: accuracy", "rank_by 'accuracy' is not a validator"),
    ("grid: [1, 2]", "grid a mapping (or a list of them)"),
])
def test_a_bad_sweep_file_is_one_error_line(tmp_path, capsys, text, message):
    from tfuda.sweep import main

    assert main(["--config", write(tmp_path, text), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_missing_sweep_file_is_one_error_line(tmp_path, capsys):
    from tfuda.sweep import main

    assert main(["--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "--config file" in capsys.readouterr().err


def entry(name, status="completed", im=None, alarm=False, accuracy=None, method="adamatch"):
    return Entry(Point(name, {}, {"method": method}), status, {} if im is None else {"im": im}, accuracy, alarm)


def test_ranking_puts_alarmed_and_failed_runs_last_and_ignores_accuracy():
    entries = [entry("failed", "failed"), entry("low", im=0.5, accuracy=0.99), entry("alarmed", im=2.0, alarm=True),
               entry("high", im=1.5, accuracy=0.10), entry("rolled", "rolled_back", im=1.0)]
    assert [e.point.name for e in rank(entries, "im")] == ["high", "rolled", "low", "alarmed", "failed"]


def test_the_verdict_compares_the_best_adapted_run_with_the_best_source_only_run():
    base = entry("base", im=1.0, method="source-only")
    helped = rank([base, entry("good", im=1.5), entry("bad", im=0.5)], "im")
    assert verdict(helped, "im").startswith("adaptation helped by im: good (1.5000) ranks above")
    worse = rank([base, entry("low", im=0.5), entry("loud", im=2.0, alarm=True)], "im")
    said = verdict(worse, "im")
    assert said.startswith("adaptation did not help by im: the best source-only run base") and "alarm" not in said
    collapsed = rank([base, entry("loud", im=2.0, alarm=True)], "im")
    assert verdict(collapsed, "im").endswith("(whose models raised the collapse alarm)")
    assert verdict(rank([entry("a", im=1.0), entry("b", im=2.0)], "im"), "im") is None


def test_the_verdict_speaks_in_estimated_accuracy_where_the_runs_have_it():
    def estimated(name, im, est, method="adamatch", alarm=False):
        point = Point(name, {}, {"method": method})
        return Entry(point, "completed", {"im": im, "est_accuracy": est}, None, alarm)

    runs = rank([estimated("base", 1.0, 0.41, "source-only"), estimated("good", 1.5, 0.84)], "im")
    assert verdict(runs, "im") == ("adaptation helped: est. target accuracy 0.84 for good (ranked first of the "
                                   "adapted runs by im) vs 0.41 for source-only base")
    by_estimate = verdict(rank(runs, "est_accuracy"), "est_accuracy")
    assert by_estimate == "adaptation helped: est. target accuracy 0.84 for good (the best adapted run) vs 0.41 " \
                          "for source-only base"
    # A confidently wrong model scores high and ranks first; its estimate says it lost.
    fooled = rank([estimated("base", 1.0, 0.41, "source-only"), estimated("sure", 2.0, 0.25)], "im")
    assert verdict(fooled, "im").startswith("adaptation did not help: est. target accuracy 0.25 for sure")
    # Collapsed predictions fool the estimate too: an alarmed model is never said to have helped.
    collapsed = rank([estimated("base", 1.0, 0.41, "source-only"), estimated("skewed", 2.0, 0.70, alarm=True)], "im")
    assert verdict(collapsed, "im") == ("adaptation did not help: est. target accuracy 0.70 for skewed (ranked first "
                                        "of the adapted runs by im) vs 0.41 for source-only base (whose models "
                                        "raised the collapse alarm)")


def test_the_verdict_compares_runs_of_one_domain_pair_and_leaves_labeled_target_runs_out():
    def run(name, im, source, target, method="adamatch"):
        return Entry(Point(name, {}, {"method": method, "source": source, "target": target}), "completed", {"im": im})

    entries = [run("oracle", 3.0, "m", "m", "source-only"), run("base-m", 1.0, "d", "m", "source-only"),
               run("ada-m", 2.0, "d", "m"), run("base-c", 2.5, "d", "c", "source-only"), run("ada-c", 1.5, "d", "c")]
    said = verdict(rank(entries, "im"), "im").splitlines()
    # The oracle (trained on the labeled target) is no source-only baseline, and a source-only run
    # of one pair says nothing about another pair's adapted runs.
    assert sorted(said, reverse=True) == ["d → m: adaptation helped by im: ada-m (2.0000) ranks above the best source-only run base-m (1.0000)",
                    "d → c: adaptation did not help by im: the best source-only run base-c (2.5000) ranks above "
                    "every adapted run"]
    assert verdict(rank(entries[:1] + entries[2:3], "im"), "im") is None


def test_a_sweep_runs_every_point_ranks_them_resumes_and_exports_the_chosen_one(tmp_path, capsys):
    from tfuda.sweep import main

    config, out = write(tmp_path, TINY), tmp_path / "sweep"
    assert main(["--config", config, "--out", str(out), "--rank-by", "bnm"]) == 0
    printed = capsys.readouterr().out
    assert "[3/3] method-fixmatch_tau-high: trained, failed: --method-arg tau=high: expected a float" in printed
    with open(out / "leaderboard.csv", newline="") as f:
        board = list(csv.DictReader(f))
    assert [row["status"] for row in board] == ["completed", "completed", "failed"]
    assert [row["rank"] for row in board] == ["1", "2", ""]
    assert float(board[0]["bnm"]) >= float(board[1]["bnm"])
    assert board[0]["target_accuracy"] != "" and "tau=high" in board[2]["error"]
    chosen = board[0]["run"]
    assert f"chosen: {out / chosen}" in printed
    assert "verdict: adaptation " in printed and "source-only" in printed
    assert chosen in (out / "leaderboard.html").read_text()

    # A killed point (checkpoints, no metrics) resumes; a finished one is skipped.
    for name in ("metrics.json", "model.keras"):
        (out / chosen / name).unlink()
    other = board[1]["run"]
    assert main(["--config", config, "--out", str(out), "--rank-by", "bnm", "--export", str(tmp_path / "exp")]) == 0
    printed = capsys.readouterr().out
    assert f"{chosen}: resumed, completed" in printed and f"{other}: skipped" in printed
    assert json.loads((out / chosen / "metrics.json").read_text())["steps"] == 2
    report = json.loads((tmp_path / "exp" / "reports" / "tfuda" / "1.json").read_text())
    assert report["passed"] and report["run"].endswith(chosen)


def test_shards_split_the_grid_and_a_bad_shard_is_one_error_line(tmp_path, capsys):
    from tfuda.sweep import main, shard_of

    points = [Point(str(i), {}, {}) for i in range(7)]
    shards = [shard_of(points, f"{i}/3") for i in (1, 2, 3)]
    assert [[p.name for p in s] for s in shards] == [["0", "3", "6"], ["1", "4"], ["2", "5"]]
    assert main(["--config", write(tmp_path, TINY), "--out", str(tmp_path / "out"), "--shard", "4/3"]) == 2
    assert "--shard '4/3': give I/N with 1 <= I <= N" in capsys.readouterr().err
