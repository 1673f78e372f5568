"""`python -m tfuda.report --run RUN_DIR`: see what adaptation did, as pictures.

Writes `RUN_DIR/report/index.html` (self-contained: images embedded) and beside it:

  samples.png     source and target samples with the weak and strong views the model saw
  curves.png      losses, mask rate, pseudo-label accuracy, threshold, learning rate, eval accuracy
  embedding.png   2-D map (t-SNE, or PCA) of penultimate features, by domain and by class;
                  the source-only `--baseline` run and the adapted run side by side
  per_class.png   per-class target accuracy
  confusion.png   target confusion matrix

`python -m tfuda.train` makes it at the end of a run (unless `--no-report`), and
`python -m export.savedmodel` makes it again with the export verification table.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
from pathlib import Path

import numpy as np

from pipelines.errors import UserError
from tfuda.atomic import write_json_atomic, write_text_atomic
from tfuda.cli import VERBOSE_HELP, HelpFormatter, command, example, run_command
from tfuda.rundir import RunDir
from tfuda.validate import ESTIMATE

REPORT_DIR = "report"
IMAGES = ("samples.png", "curves.png", "embedding.png", "per_class.png", "confusion.png")
MAX_POINTS = 500
TSNE_ITERATIONS = 500
"""t-SNE iterations of the embedding map: half scikit-learn's default, enough for the report's
at most 2 x `MAX_POINTS` points (the neighbourhoods it keeps barely change) in half the time."""


def _log(message: str) -> None:
    print(f"report: {message}", flush=True)


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """All TensorBoard scalars under `log_dir`: {tag: [(step, value), ...]} sorted by step."""
    import tensorflow as tf

    scalars: dict[str, dict[int, float]] = {}
    for event_file in sorted(log_dir.rglob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(event_file)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                scalars.setdefault(value.tag, {})[event.step] = number
    return {tag: sorted(points.items()) for tag, points in scalars.items()}


def _figure(rows: int, cols: int, size=(4.0, 3.2)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    return plt, fig, axes


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_samples(data, config: dict, path: Path, count: int = 8) -> None:
    """Rows: source/target x (input, weak, strong), as the feed makes them for this run.

    Args:
      data: the run's `pipelines.run_data.RunData`.
      config: the run's config (image size, flip, seed).
      path: PNG to write.
      count: images per row.
    """
    import tensorflow as tf

    from pipelines.augment import Augment
    from pipelines.feeds import preprocessed_batches

    size = config["image_size"]
    policy = Augment(flip=config.get("flip", False))
    rows = []
    for name, source in (("source", data.labeled_source), ("target", data.target)):
        if source is None:
            continue
        images, _ = next(iter(preprocessed_batches(source, count, size, shuffle_seed=config["seed"])))
        views = policy.views(images, ("weak", "strong"), tf.constant([config["seed"], 0], tf.int64))
        rows += [(f"{name}", images.numpy()), (f"{name} weak", views["weak"].numpy()),
                 (f"{name} strong", views["strong"].numpy())]
    plt, fig, axes = _figure(len(rows), count, size=(1.2, 1.3))
    for r, (label, batch) in enumerate(rows):
        for c in range(count):
            axis = axes[r][c]
            axis.imshow(np.clip(batch[c], 0, 255).astype(np.uint8) if c < len(batch) else np.zeros((size, size, 3)))
            axis.set_xticks([])
            axis.set_yticks([])
            if c == 0:
                axis.set_ylabel(label, fontsize=8)
    _save(plt, fig, path)


CURVE_GROUPS = (
    ("losses", lambda tag: tag.startswith("losses/") and tag != "losses/weight_decay" or tag == "loss"),
    ("mask rate / threshold", lambda tag: tag in ("monitors/mask_rate", "monitors/threshold")),
    ("pseudo-label accuracy", lambda tag: "pseudo_label_acc" in tag),
    ("learning rate", lambda tag: tag == "monitors/lr"),
    ("eval accuracy", lambda tag: tag.startswith("eval/") or tag == f"validators/{ESTIMATE}"),
)
"""The first row of panels; the second has one panel per label-free validator, each on its own
scale (their ranges differ by 100x), with the labeled target accuracy beside it where the run has one."""


def plot_curves(scalars: dict, path: Path) -> list[str]:
    """The panels of `CURVE_GROUPS` and one per validator; returns the groups that had no data."""
    validators = sorted(tag for tag in scalars if tag.startswith("validators/"))
    plt, fig, axes = _figure(2, max(len(CURVE_GROUPS), len(validators), 1))
    missing = []
    for axis, (title, wanted) in zip(axes[0], CURVE_GROUPS):
        tags = sorted(tag for tag in scalars if wanted(tag))
        for tag in tags:
            steps, values = zip(*scalars[tag])
            axis.plot(steps, values, label=tag, marker="o" if len(steps) < 5 else None)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("step")
        if tags:
            axis.legend(fontsize=7)
        else:
            missing.append(title)
            axis.text(0.5, 0.5, "not logged in this run", ha="center", va="center", transform=axis.transAxes)
    accuracy = scalars.get("eval/target_accuracy")
    for axis, tag in zip(axes[1], validators):
        steps, values = zip(*scalars[tag])
        axis.plot(steps, values, marker="o", color="C0")
        axis.set_title(f"{tag.split('/', 1)[1]} (higher is better)", fontsize=10)
        axis.set_xlabel("step")
        if accuracy:
            twin = axis.twinx()
            twin.plot(*zip(*accuracy), color="0.6", linestyle="--", label="target accuracy (labels)")
            twin.tick_params(labelsize=7, colors="0.5")
            twin.legend(fontsize=7, loc="lower right")
    if not validators:
        missing.append("label-free validators")
    for axis in [*axes[0][len(CURVE_GROUPS):], *axes[1][len(validators):]]:
        axis.axis("off")
    _save(plt, fig, path)
    return missing


def embed_features(run: RunDir, sets: dict, max_points: int, method: str) -> dict:
    """Penultimate features of up to `max_points` images of each domain's set (`{domain: Source}`),
    reduced to 2-D together."""
    from pipelines.feeds import preprocessed_batches
    from tfuda.models import embedding_model

    features_model = embedding_model(run.load_model())
    size = run.image_size()
    features, domains, labels = [], [], []
    for domain, source in sets.items():
        count = 0
        for images, batch_labels in preprocessed_batches(source, 256, size):
            embedding, _ = features_model(images.numpy().astype(np.float32), training=False)
            take = min(len(images), max_points - count)
            features.append(np.asarray(embedding)[:take])
            labels.append(batch_labels.numpy()[:take])
            domains += [domain] * take
            count += take
            if count >= max_points:
                break
    x = np.concatenate(features)
    if method == "pca":
        from sklearn.decomposition import PCA

        points = PCA(2, random_state=0).fit_transform(x)
    else:
        from sklearn.manifold import TSNE

        points = TSNE(2, init="pca", random_state=0, perplexity=min(30, max(2, len(x) // 4)),
                      max_iter=TSNE_ITERATIONS).fit_transform(x)
    return {"points": points, "domains": np.array(domains), "labels": np.concatenate(labels)}


def plot_embeddings(panels: list[tuple[str, dict]], class_names: list[str], path: Path) -> None:
    plt, fig, axes = _figure(len(panels), 2, size=(4.5, 4.0))
    for row, (title, data) in enumerate(panels):
        points, domains, labels = data["points"], data["domains"], data["labels"]
        for domain, marker in (("source", "o"), ("target", "^")):
            chosen = domains == domain
            axes[row][0].scatter(*points[chosen].T, s=6, marker=marker, label=domain, alpha=0.6)
            scatter = axes[row][1].scatter(*points[chosen].T, s=6, marker=marker, c=labels[chosen],
                                           cmap="tab10", vmin=0, vmax=max(9, len(class_names) - 1), alpha=0.7)
        axes[row][0].set_title(f"{title}: by domain", fontsize=10)
        axes[row][0].legend(fontsize=8)
        axes[row][1].set_title(f"{title}: by class (o source, ^ target)", fontsize=10)
        if len(class_names) <= 20:
            fig.colorbar(scatter, ax=axes[row][1], ticks=range(len(class_names))).ax.set_yticklabels(class_names, fontsize=7)
    _save(plt, fig, path)


def plot_per_class(per_class: dict, path: Path) -> None:
    plt, fig, axes = _figure(1, 1, size=(max(4.0, 0.4 * len(per_class)), 3.2))
    names = list(per_class)
    values = [per_class[n] if per_class[n] is not None else 0.0 for n in names]
    axes[0][0].bar(names, values, color="tab:blue")
    axes[0][0].set_ylim(0, 1)
    axes[0][0].set_ylabel("target accuracy")
    axes[0][0].tick_params(axis="x", labelrotation=90 if len(names) > 12 else 0)
    _save(plt, fig, path)


def plot_confusion(confusion: list[list[int]], class_names: list[str], path: Path) -> None:
    matrix = np.asarray(confusion)
    side = max(4.0, 0.35 * len(class_names))
    plt, fig, axes = _figure(1, 1, size=(side + 1, side))
    axis = axes[0][0]
    image = axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names, fontsize=7, rotation=90 if len(class_names) > 12 else 0)
    axis.set_yticks(range(len(class_names)), class_names, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(class_names) <= 15:
        for (i, j), count in np.ndenumerate(matrix):
            axis.text(j, i, str(count), ha="center", va="center", fontsize=7,
                      color="white" if count > matrix.max() / 2 else "black")
    fig.colorbar(image, ax=axis)
    _save(plt, fig, path)


def fmt_cell(value, digits: int = 4) -> str:
    """One HTML table cell's text: floats to `digits` places, None as n/a, the rest escaped."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def html_table(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None) -> str:
    """An HTML table of already-escaped cells."""
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def summary_rows(metrics: dict) -> list[tuple[str, str]]:
    """The summary table: the same numbers as metrics.json."""
    config = metrics.get("config", {})
    return [
        ("method", fmt_cell(config.get("method"))),
        ("setting", fmt_cell(config.get("setting", "uda"))),
        ("data", fmt_cell(f"{config.get('source') or '(no source data)'} -> {config.get('target')}")),
        ("model", fmt_cell(f"init {config['init']}" if config.get("init") else config.get("model"))),
        ("steps", fmt_cell(metrics.get("steps"))),
        ("wall time (s)", fmt_cell(metrics.get("wall_time_s"), 1)),
        ("source accuracy", fmt_cell(metrics.get("source_accuracy"))),
        ("target accuracy", fmt_cell(metrics.get("target_accuracy"))),
        ("estimated target accuracy (no labels)", fmt_cell((metrics.get("estimated_target_accuracy") or {}).get("value"))),
        ("target evaluation set", fmt_cell(metrics.get("eval_target"))),
        *((f"validator {name}", fmt_cell(value)) for name, value in (metrics.get("validators") or {}).items()),
        ("status", fmt_cell(metrics.get("status"))),
        ("model", fmt_cell((metrics.get("selection") or {}).get("reason"))),
        ("collapse alarms", fmt_cell(", ".join(f"step {a['step']}" for a in metrics.get("alarms") or []) or "none")),
        ("estimated target class prior", fmt_cell(" ".join(f"{p:.3f}" for p in metrics["estimated_target_prior"])
                                                  if metrics.get("estimated_target_prior") else None)),
        *(("advice", fmt_cell(line)) for line in metrics.get("advice") or []),
    ]


def export_rows(report: dict) -> list[tuple[str, ...]]:
    rows = [("keras (reference)", "", fmt_cell(report["keras"]["accuracy"]), "", "", fmt_cell(report["keras"]["latency_ms_p50"], 2), "")]
    for a in report["artifacts"]:
        rows.append((html.escape(f"{a['format']} {a['precision']}"), f"{a['bytes'] / 1024:.0f} KiB",
                     fmt_cell(a["accuracy"]), fmt_cell(a["agreement"]), fmt_cell(a["max_abs_prob_diff"], 5),
                     fmt_cell(a["latency_ms_p50"], 2), "yes" if a["passed"] else "NO"))
    return rows


def _embedding_panels(run: RunDir, data, baseline: str | None, embedding: str, max_points: int,
                      notes: list[str]) -> list[tuple[str, dict]]:
    sets = {"source": data.eval_source or data.labeled_source, "target": data.eval_target or data.target}
    sets = {domain: source for domain, source in sets.items() if source is not None}
    _log(f"features and {embedding.upper()} of up to {max_points} images per domain")
    panels = []
    if baseline:
        base = RunDir(baseline)
        base.check_model()
        panels.append((f"baseline ({base.config().get('method')})", embed_features(base, sets, max_points, embedding)))
    else:
        notes.append("No --baseline run given: the embedding map shows the adapted model alone. Train a "
                     "source-only run (python -m tfuda.train --method source-only ...) and pass it as --baseline "
                     "to compare.")
    panels.append((f"adapted ({run.config().get('method')})", embed_features(run, sets, max_points, embedding)))
    return panels


def _export_html(export_report: str | None) -> str:
    if not export_report:
        return ("<p>No export yet: run <code>python -m export.savedmodel --run RUN</code>; it remakes this "
                "report with its verification table.</p>")
    try:
        report = json.loads(Path(export_report).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"--export-report '{export_report}' cannot be read: {err}") from None
    return (f"<p>Export <b>{html.escape(str(report.get('name')))}</b> version {report.get('version')}, "
            f"{report.get('num_images')} images of {html.escape(str(report.get('eval_set')))}.</p>"
            + html_table(export_rows(report), ("artifact", "size", "accuracy", "agreement",
                                           "max |Δp|", "p50 latency ms", "passed")))


def _page(run: RunDir, metrics: dict, export_html: str, notes: list[str], images: list[str]) -> str:
    out = run.path / REPORT_DIR
    sections = "".join(
        f"<h2>{html.escape(name.removesuffix('.png').replace('_', ' '))}</h2>"
        f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode((out / name).read_bytes()).decode()}">'
        f'<p class="file"><a href="{name}">{name}</a></p>' for name in images)
    notes_html = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>tfuda report: {html.escape(run.path.name)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}img{{max-width:100%}}.note{{color:#a60}}</style></head>
<body><h1>tfuda report: {html.escape(str(run.path))}</h1>
<h2>summary</h2>{html_table(summary_rows(metrics))}
<h2>export verification</h2>{export_html}
{notes_html}{sections}</body></html>"""


def write_report(run_path: str | Path, *, export_report: str | None = None, baseline: str | None = None,
                 embedding: str = "tsne", max_points: int = MAX_POINTS, plots: bool = True) -> Path:
    """Builds the report of a finished run; returns the path of index.html.

    The run's data is opened as training opened it (`pipelines.run_data.RunData`). With
    `plots=False` the plots of an earlier report are kept and only the page is rewritten (how an
    export adds its verification table; the plots are made when there are none).
    """
    run = RunDir(run_path)
    run.check_model()
    out = run.path / REPORT_DIR
    notes_file = out / "notes.json"
    if plots or not notes_file.is_file():
        notes = _plots(run, out, baseline, embedding, max_points)
        write_json_atomic(notes_file, notes)
    else:
        notes = json.loads(notes_file.read_text())
    images = [name for name in IMAGES if (out / name).is_file()]
    index = out / "index.html"
    write_text_atomic(index, _page(run, run.metrics(), _export_html(export_report), notes, images))
    _log(f"wrote {index}" + (" (with the export)" if export_report else ""))
    return index


def _plots(run: RunDir, out: Path, baseline: str | None, embedding: str, max_points: int) -> list[str]:
    """Draws the report's plots into `out`; returns the notes on what could not be drawn."""
    from pipelines.run_data import RunData

    metrics = run.metrics()
    config = run.config()
    data = RunData(config, run.class_names(), f"run '{run.path}'")
    out.mkdir(exist_ok=True)
    notes: list[str] = []

    _log("samples")
    plot_samples(data, config, out / "samples.png")
    _log("training curves")
    missing = plot_curves(read_scalars(run.logs), out / "curves.png")
    if missing:
        notes.append(f"Not logged in this run: {', '.join(missing)} (pseudo-label accuracy needs target "
                     "labels for monitoring; curves are written every 10 steps).")
    panels = _embedding_panels(run, data, baseline, embedding, max_points, notes)
    plot_embeddings(panels, run.class_names(), out / "embedding.png")
    for name in ("per_class.png", "confusion.png"):
        (out / name).unlink(missing_ok=True)
    if metrics.get("per_class_target_accuracy"):
        plot_per_class(metrics["per_class_target_accuracy"], out / "per_class.png")
        plot_confusion(metrics["target_confusion"], run.class_names(), out / "confusion.png")
    else:
        notes.append("No labeled target evaluation set: no per-class accuracy or confusion matrix "
                     "(give --eval-target when training).")
    return notes


@command
def main(argv: list[str] | None = None, prog: str = "python -m tfuda.report") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=HelpFormatter,
                                     epilog=example("tfuda report --run runs/demo --baseline runs/source-only"))
    parser.add_argument("--run", required=True, help="run directory")
    parser.add_argument("--export-report", help="an export's reports/NAME/<version>.json to include")
    parser.add_argument("--baseline", help="a source-only run directory to compare embeddings with")
    parser.add_argument("--embedding", choices=("tsne", "pca"), default="tsne")
    parser.add_argument("--max-points", type=int, default=MAX_POINTS, help="images per domain in the embedding map")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    args = parser.parse_args(argv)

    def body() -> int:
        write_report(args.run, export_report=args.export_report, baseline=args.baseline,
                     embedding=args.embedding, max_points=args.max_points)
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
