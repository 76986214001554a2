"""`semhpc report`: the notebooks' figures as a static HTML page with PNG files, for people
without Jupyter (attach the folder to a mail, publish it on a web server, open it from a share).

The page is built from sections; each section is a title, figures (saved as PNG beside the
page) and tables (pandas HTML). The run's sections are always there; bench, profile and
classification sections are added when their outputs are given (the same figures as the notebooks).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from semhpc.monitor import bench, classification, figures
from semhpc.monitor.layer_timing import load_layer_timing
from semhpc.monitor.run import Run
from semhpc.utils import atomic

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 1150px; margin: 2em auto; color: #222; }}
img {{ max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
.note {{ color: #555; }}
</style></head>
<body>
<h1>{title}</h1>
{body}
</body></html>
"""


@dataclass
class Section:
    title: str
    notes: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)      # file stem -> matplotlib Figure
    tables: list[pd.DataFrame] = field(default_factory=list)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, predictions: str | Path | None = None,
                 sweep: str | Path | None = None, profile: str | Path | None = None) -> Path:
    """Write OUT/index.html (default RUN/report/) and one PNG per figure; return the page's path.
    `predictions`, `sweep` and `profile` add the sections of notebooks 04, 02 and 03."""
    run = Run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    sections = [training_section(run), evaluation_section(run)]
    if predictions is not None:
        sections.append(predictions_section(predictions))
    if sweep is not None:
        sections.append(scaling_section(sweep))
    if profile is not None:
        sections.append(profile_section(profile))
    body = "\n".join(_render(section, out) for section in sections)
    page = out / "index.html"
    atomic.write_text(page, PAGE.format(title=html.escape(f"semhpc report: {run.path}"), body=body))
    return page


def training_section(run: Run) -> Section:
    epochs = run.epochs()
    section = Section("Training", notes=[run.status().describe(),
                                         f"epoch-end evaluations score the {figures.evaluated_split(epochs)} split"])
    section.figures["training_curves"] = figures.training_curves(run.steps(), epochs)
    section.figures["rank_step_spread"] = figures.rank_step_spread(run.rank_step_times())
    section.tables.append(epochs.drop(columns=["time"]))
    return section


def evaluation_section(run: Run) -> Section:
    result = run.eval_results() or run.test_results()
    if result is None:
        return Section("Evaluation", notes=["no eval.json or test_metrics.json yet: the run has not finished"])
    section = Section("Evaluation", notes=[f"accuracy {result['accuracy']:.3f}, top-5 {result['top5_accuracy']:.3f}, "
                                          f"loss {result['loss']:.3f} on {result['images']} images"])
    section.figures["confusion_matrix"] = figures.confusion_matrix(result)
    section.figures["per_class_metrics"] = figures.per_class_metrics(result)
    section.tables.append(classification.per_class_table(result))
    return section


def predictions_section(predictions: str | Path) -> Section:
    preds = classification.labelled(classification.load_predictions(predictions))
    by_score = classification.accuracy_by_score(preds)
    section = Section("Classification scores", notes=[f"{len(preds)} labelled predictions from {predictions}"])
    section.figures["score_histogram"] = figures.score_histogram(preds)
    section.figures["probability_correct"] = figures.probability_correct(by_score)
    section.tables += [by_score, classification.decision_table(preds)]
    return section


def scaling_section(sweep: str | Path) -> Section:
    measured = bench.load_sweep(sweep)
    section = Section("Scaling", notes=[f"rank sweep {sweep}; dashed: the thesis' GPUs (docs/background.md: Scaling)"])
    section.figures["scaling"] = figures.scaling(measured, bench.thesis_scaling())
    section.tables.append(measured)
    return section


def profile_section(path: str | Path) -> Section:
    result = load_layer_timing(path)
    section = Section("Per-layer profile", notes=[f"profile {path}"])
    section.figures["layer_times"] = figures.layer_times(result.layer_times())
    section.figures["layer_time_vs_iteration"] = figures.layer_time_vs_iteration(result.layer_time_by_iteration())
    section.figures["coverage"] = figures.step_coverage(result.step_breakdown(), result.summary)
    section.tables.append(result.summary_table().to_frame())
    return section


def _render(section: Section, out: Path) -> str:
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in section.notes]
    for stem, figure in section.figures.items():
        with atomic.atomic_path(out / f"{stem}.png") as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        parts.append(f'<img src="{stem}.png" alt="{html.escape(stem)}">')
    parts += [table.to_html(float_format=lambda x: f"{x:.4g}", border=0) for table in section.tables]
    return "\n".join(parts)
