"""The default budget: passes over the target, held between a floor and a ceiling; the run says it."""

import json

import pytest

from tfuda import budget
from tfuda.budget import default_budget, given_budget


def test_the_budget_is_twenty_passes_over_the_target_between_floor_and_ceiling():
    assert default_budget(4000, 8).steps == 3333  # 20 * 4000 / 24, rounded
    assert default_budget(585, 8).steps == budget.MIN_STEPS == 2400  # the floor chosen on the suite
    assert default_budget(1437, 8).steps == 2400 and default_budget(3000, 8).steps == 2500
    assert default_budget(60_000, 8).steps == budget.MAX_STEPS
    assert default_budget(None, 8).steps == budget.MIN_STEPS
    assert default_budget(12_000, 8).steps == 10_000 and default_budget(11_000, 8).steps == 9167


def test_from_batch_32_the_floor_is_the_earlier_defaults_steps_and_the_ceiling_as_many_images():
    assert default_budget(4000, 32).steps == budget.LARGE_BATCH_MIN_STEPS == 1500  # 833 would be 20 passes
    assert default_budget(9000, 32).steps == 1875  # 20 passes
    assert default_budget(60_000, 32).steps == 2500  # the images of 10,000 steps at batch 8
    assert default_budget(4000, 16).steps == 2400  # below batch 32 the floor is batch 8's
    assert default_budget(4000, 8, replicas=4).steps == 1500  # the floor follows the batch of all replicas


def test_the_data_chooses_the_batch_by_the_targets_size_unless_given():
    assert budget.LARGE_TARGET == 2880  # 20 passes at batch 8 are the floor's 2,400 steps
    assert [default_budget(n).batch_size for n in (None, 585, 1437, 2879, 2880, 4000, 60_000)] == \
        [8, 8, 8, 8, 32, 32, 32]
    assert default_budget(4000).line() == (
        "budget: batch 32 (a target of at least 2,880 images; --batch-size sets it); 1500 steps = 36 passes over "
        "the 4,000 unlabeled target images at 96 a step, the floor (833 steps would be 20 passes); --steps sets it")
    assert default_budget(1437).line().startswith("budget: batch 8 (a target of under 2,880 images; --batch-size "
                                                  "sets it); 2400 steps = 40 passes")
    assert default_budget(None).line().startswith("budget: batch 8 (the target's size is unknown;")
    given = default_budget(4000, 8)
    assert (given.batch_size, given.batch_reason) == (8, "") and given.line().startswith("budget: 3333 steps")
    assert default_budget(4000, 2, replicas=4).batch_size == 2  # per replica, as --batch-size
    assert given_budget(700, default_budget(4000)).line() == (
        "budget: batch 32 (a target of at least 2,880 images; --batch-size sets it); 700 steps (given); the default "
        "for this data would be 1500 steps = 36 passes over the 4,000 unlabeled target images at 96 a step, the floor "
        "(833 steps would be 20 passes)")


def test_the_reason_says_passes_images_and_which_bound():
    assert default_budget(4000, 8).reason.startswith("3333 steps = 20 passes over the 4,000 unlabeled target images "
                                                     "at 24 a step")
    assert "the floor (488 steps would be 20 passes)" in default_budget(585, 8).reason
    assert "the ceiling (50000 steps would be 20 passes)" in default_budget(60_000, 8).reason
    assert "unknown" in default_budget(None, 8).reason
    assert all(default_budget(n, 8).line().endswith("; --steps sets it") for n in (None, 585, 4000, 60_000))


def test_a_method_taking_another_number_of_target_images_a_step_hears_its_own_passes():
    shot = default_budget(1437, 8, uratio=2)  # the steps stay AdaMatch's (24 a step)
    assert shot.steps == default_budget(1437, 8).steps == 2400
    assert shot.reason == ("2400 steps, the default method's for this data (40 passes over the 1,437 unlabeled target "
                           "images at 24 a step, the floor (1198 steps would be 20 passes)); this method takes 16 a "
                           "step: 27 passes")
    assert default_budget(4000, 8, uratio=0).reason.endswith("at 24 a step); this method takes none")
    assert default_budget(4000, 8, uratio=3).reason == default_budget(4000, 8).reason


def test_a_given_budget_says_what_the_default_would_be():
    default = default_budget(1437, 8)
    assert given_budget(1200, default).line() == f"budget: 1200 steps (given); the default for this data would be " \
                                                 f"{default.reason}"
    assert given_budget(1200, default).steps == 1200 and default.reason.startswith("2400 steps = 40 passes")
    assert given_budget(2400, default).line() == f"budget: 2400 steps (given), the default for this data: {default.reason}"


@pytest.fixture
def small_budget(monkeypatch):
    """One pass, no floor: a budget of a few steps on the 1,437-image digits-m (8 steps at 192 a step)."""
    monkeypatch.setattr(budget, "PASSES", 1)
    monkeypatch.setattr(budget, "MIN_STEPS", 1)
    monkeypatch.setattr(budget, "LARGE_BATCH_MIN_STEPS", 1)
    return lambda batch: int(1437 / (3 * batch) + 0.5)


def test_a_run_without_steps_trains_the_budget_says_it_first_and_records_it(tmp_path, capsys, small_budget):
    from tfuda.train import main

    out = tmp_path / "run"
    assert main(["--batch-size", "64", "--image-size", "16", "--validation-size", "32", "--eval-every", "100",
                 "--no-report", "--out", str(out)]) == 0
    expected = small_budget(64)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"budget: {expected} steps = 1 passes over the 1,437 unlabeled target images at 192 a step; " \
                       "--steps sets it"
    assert f"steps 0->{expected}" in lines[1]
    assert json.loads((out / "config.json").read_text())["steps"] == expected
    assert json.loads((out / "metrics.json").read_text())["steps"] == expected
    # --resume keeps the recorded budget; a given --steps overrides it
    assert main(["--resume", "--steps", str(expected + 2), "--out", str(out), "--no-report"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == expected + 2
    assert "budget:" not in capsys.readouterr().out
    # a fresh run given --steps says so, and what the data's default would be
    assert main(["--batch-size", "64", "--image-size", "16", "--validation-size", "32", "--steps", "2",
                 "--no-report", "--out", str(tmp_path / "given")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == \
        f"budget: 2 steps (given); the default for this data would be {expected} steps = 1 passes over the 1,437 " \
        "unlabeled target images at 192 a step"


def test_contrastive_phases_follow_the_budget(tmp_path, capsys, small_budget):
    from tfuda.train import main

    out = tmp_path / "run"
    assert main(["--method", "contrastive", "--pretrain-steps", "3", "--batch-size", "64", "--image-size", "16",
                 "--validation-size", "32", "--eval-every", "100", "--no-report", "--out", str(out)]) == 0
    # the steps are AdaMatch's (192 target images a step); contrastive takes 64 (uratio 1)
    assert capsys.readouterr().out.splitlines()[0].endswith("at 192 a step); this method takes 64 a step: 0 passes; "
                                                           "--steps sets it")
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == small_budget(64) and config["pretrain_steps"] == 3
    assert config["finetune_steps"] == small_budget(64) - 3


def test_adapt_without_steps_trains_the_budget(capsys, small_budget):
    import tfuda

    model = tfuda.build_model("cnn-small", num_classes=10, image_size=16)
    result = tfuda.adapt(model, "digits", "digits-m", batch_size=64, eval_every=100, validation_size=32)
    assert result.metrics["steps"] == small_budget(64) == result.metrics["config"]["steps"]
    assert capsys.readouterr().out.startswith(f"budget: {small_budget(64)} steps")
    tfuda.adapt(model, "digits", "digits-m", batch_size=64, steps=1, eval_every=100, validation_size=32)
    assert capsys.readouterr().out.startswith(f"budget: 1 steps (given); the default for this data would be "
                                              f"{small_budget(64)} steps")
    assert len(result.estimated_target_prior) == 10 and isinstance(result.advice, list)


def test_a_run_without_batch_size_takes_the_datas_records_it_and_resumes_with_it(tmp_path, capsys, small_budget,
                                                                                  monkeypatch):
    from tfuda.train import main

    monkeypatch.setattr(budget, "LARGE_TARGET", 1000)  # digits-m's 1,437 images count as a large target
    out = tmp_path / "run"
    assert main(["--image-size", "16", "--validation-size", "32", "--eval-every", "100", "--no-report",
                 "--out", str(out)]) == 0
    expected = small_budget(32)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"budget: batch 32 (a target of at least 1,000 images; --batch-size sets it); {expected} " \
                       "steps = 1 passes over the 1,437 unlabeled target images at 96 a step; --steps sets it"
    assert "batch 32 + 96 unlabeled" in lines[1]
    assert json.loads((out / "config.json").read_text())["batch_size"] == 32
    assert main(["--resume", "--steps", str(expected + 1), "--out", str(out), "--no-report"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["steps"], metrics["config"]["batch_size"]) == (expected + 1, 32)
    assert "budget:" not in capsys.readouterr().out
    # a given --batch-size is kept, and the first line does not explain it
    assert main(["--batch-size", "64", "--image-size", "16", "--validation-size", "32", "--steps", "1",
                 "--no-report", "--out", str(tmp_path / "given")]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("budget: 1 steps (given)")
    assert json.loads((tmp_path / "given" / "config.json").read_text())["batch_size"] == 64
