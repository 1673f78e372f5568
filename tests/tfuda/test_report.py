"""The HTML report: every picture written and referenced, numbers equal to metrics.json."""

import json

from tests.report_html import check_images_and_html
from tfuda.report import IMAGES, main as report_main
from tfuda.train import main as train_main


def test_train_writes_a_report_whose_numbers_match_metrics(tiny_run):
    report_dir = tiny_run / "report"
    html = check_images_and_html(report_dir, IMAGES)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert f"<td>target accuracy</td><td>{metrics['target_accuracy']:.4f}</td>" in html
    assert f"<td>source accuracy</td><td>{metrics['source_accuracy']:.4f}</td>" in html
    assert f"<td>steps</td><td>{metrics['steps']}</td>" in html
    assert f"<td>wall time (s)</td><td>{metrics['wall_time_s']:.1f}</td>" in html
    assert "No export yet" in html and "No --baseline run given" in html


def test_export_remakes_the_report_with_its_table(trained_run, tmp_path):
    import shutil

    from export.savedmodel import main as export_main

    run = shutil.copytree(trained_run, tmp_path / "trained")  # the shared run stays as it was built
    assert export_main(["--run", str(run), "--out", str(tmp_path / "exp"), "--formats", "savedmodel",
                        "--max-eval-images", "32", "--name", "remade"]) == 0
    html = (run / "report" / "index.html").read_text()
    assert "Export <b>remade</b> version 1" in html and "savedmodel float32" in html


def test_report_of_a_run_missing_optional_parts(tmp_path, capsys):
    run = tmp_path / "bare"
    assert train_main(["--method", "source-only", "--target", "digits-m:test", "--steps", "2",
                       "--batch-size", "4", "--eval-every", "100", "--out", str(run)]) == 0
    html = check_images_and_html(run / "report", ("samples.png", "curves.png", "embedding.png"))
    assert "No labeled target evaluation set" in html
    assert "Not logged in this run" in html and "pseudo-label accuracy" in html
    assert "<td>target accuracy</td><td>n/a</td>" in html
    assert not (run / "report" / "confusion.png").exists()


def test_report_cli_errors(tmp_path, capsys):
    assert report_main(["--run", str(tmp_path)]) == 2
    assert "has no model.keras" in capsys.readouterr().err


def test_each_validator_has_its_own_scale_beside_the_target_accuracy(tmp_path, monkeypatch):
    import tfuda.report as report

    figures = []
    monkeypatch.setattr(report, "_save", lambda plt, fig, path: figures.append(fig))
    steps = [500, 1000, 1500]
    scalars = {"validators/bnm": list(zip(steps, [0.070, 0.080, 0.085])),
               "validators/snd": list(zip(steps, [5.1, 5.0, 4.9])),
               "eval/target_accuracy": list(zip(steps, [0.5, 0.7, 0.8])), "loss": list(zip(steps, [1.0, 0.8, 0.7]))}
    report.plot_curves(scalars, tmp_path / "curves.png")
    axes = {axis.get_title(): axis for axis in figures[0].axes if axis.get_title()}
    bnm, snd = axes["bnm (higher is better)"], axes["snd (higher is better)"]
    assert bnm.get_ylim()[1] - bnm.get_ylim()[0] < 0.1 and snd.get_ylim()[0] > 4  # not one shared axis
    twins = [a for a in figures[0].axes if a.get_legend() and "target accuracy (labels)" in
             [t.get_text() for t in a.get_legend().get_texts()]]
    assert len(twins) == 2
