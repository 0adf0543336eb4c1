"""The report of a comparison: a summary table, PNG figures, ``report.html`` and the data.

:func:`write_report` writes into one folder:

- ``curves.png``: the training loss (smoothed) and each held-out metric against the step,
  every run on the same axes (a run with an EMA adds its averaged weights, dashed);
- ``schedules.png``: each hyperparameter that changes during a run, against the step;
- ``time.png``: the median time of a step's batch, forward and backward, and of its
  update (for LBFGS, whose step runs the model itself, all of it counts as update);
- ``report.html``: the table and the three figures, with the settings;
- ``results.json``: everything recorded; ``config.toml``: the configuration that repeats
  the comparison with ``descend compare --config``.
"""

from __future__ import annotations

import html
import json
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import descend
from descend.cli.train import RunResult

DPI = 100


@dataclass(frozen=True)
class Settings:
    """What a comparison ran on, for the report's header."""

    task: str
    description: str
    steps: int
    seed: int
    device: str
    metrics: tuple[str, ...]
    log_loss: bool


# --------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------


def table_rows(settings: Settings, results: list[RunResult]) -> tuple[list[str], list[list[str]]]:
    """The summary table's header (names broken over two lines) and rows; an EMA adds a
    row for the averaged weights. "test" is the task's held-out evaluation."""
    metrics = settings.metrics
    header = [
        "run",
        "train\nloss",
        *(f"test\n{m}" for m in metrics),
        "ms per\nstep",
        "ms per\nupdate",
        "state\nmemory",
    ]
    rows = []
    for result in results:
        final = result.final()
        rows.append(
            [
                result.label
                if result.diverged_at is None
                else f"{result.label} (diverged at step {result.diverged_at})",
                _number(final_train_loss(result)),
                *(_metric(m, final.get(m, math.nan)) for m in metrics),
                f"{result.ms_per_step:.3f}",
                f"{result.ms_per_update:.3f}",
                _bytes(result.state_bytes),
            ]
        )
        if result.ema_evals is not None:
            ema = result.final(ema=True)
            rows.append(
                [
                    f"  ↳ EMA {result.spec.ema:g}",
                    "",
                    *(_metric(m, ema.get(m, math.nan)) for m in metrics),
                    "",
                    "",
                    f"+{_bytes(result.ema_bytes or 0)}",
                ]
            )
    return header, rows


def final_train_loss(result: RunResult) -> float:
    """The mean training loss of the last 5% of the steps taken (at least one)."""
    losses = result.train_loss
    if not losses:
        return math.nan
    tail = losses[-max(1, len(losses) // 20) :]
    return sum(tail) / len(tail)


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}"


def _metric(name: str, value: float) -> str:
    return f"{value:.1%}" if name == "accuracy" and math.isfinite(value) else _number(value)


def _bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if count < 1024 or unit == "MiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError  # pragma: no cover


def print_table(console: Any, settings: Settings, results: list[RunResult]) -> None:
    """Print the summary table with rich."""
    from rich.table import Table

    header, rows = table_rows(settings, results)
    table = Table(title=f"{settings.task}: {settings.steps} steps, seed {settings.seed}")
    for i, name in enumerate(header):
        if i == 0:
            table.add_column(name, overflow="fold", ratio=1, min_width=12)
        else:
            table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        "train loss: mean of the last 5% of steps; test: the held-out evaluation after the "
        "last step; ms: median per step; state memory: the optimizer's state tensors "
        "(+ the EMA copy)"
    )


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def _figure(panels: int, size: tuple[float, float]) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, list(figure.subplots(1, panels, squeeze=False)[0])


def color(index: int) -> str:
    """The color of run ``index`` in every figure: matplotlib's default cycle."""
    return f"C{index % 10}"


def smooth(values: list[float], weight: float) -> np.ndarray:
    """Exponential moving average with bias correction (``weight`` 0: no smoothing)."""
    out = np.empty(len(values))
    average = 0.0
    for i, value in enumerate(values):
        average = weight * average + (1 - weight) * value
        out[i] = average / (1 - weight ** (i + 1))
    return out


def plot_curves(path: Path, settings: Settings, results: list[RunResult]) -> None:
    """Training loss and the held-out metrics against the step, all runs together."""
    panels = 1 + len(settings.metrics)
    figure, axes = _figure(panels, (4.6 * panels, 3.8))
    weight = (
        0.0 if settings.steps < 50 else 1 - 10 / settings.steps if settings.steps < 500 else 0.98
    )
    for i, result in enumerate(results):
        steps = np.arange(1, len(result.train_loss) + 1)
        axes[0].plot(steps, result.train_loss, color=color(i), alpha=0.15, linewidth=0.8)
        axes[0].plot(
            steps,
            smooth(result.train_loss, weight),
            color=color(i),
            linewidth=1.8,
            label=result.label,
        )
        for ax, metric in zip(axes[1:], settings.metrics):
            ax.plot(
                result.eval_steps,
                result.evals[metric],
                color=color(i),
                linewidth=1.8,
                marker="o",
                markersize=3,
                label=result.label,
            )
            if result.ema_evals is not None:
                ax.plot(
                    result.eval_steps,
                    result.ema_evals[metric],
                    color=color(i),
                    linewidth=1.8,
                    linestyle="--",
                    label=f"{result.label} · EMA",
                )
    axes[0].set_title("training loss" + (" (smoothed)" if weight else ""))
    for ax, metric in zip(axes[1:], settings.metrics):
        ax.set_title(f"test {metric} (held out)")
    for ax, metric in zip(axes, ("loss", *settings.metrics)):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if metric == "loss" and settings.log_loss:
            ax.set_yscale("log")
    _legend(figure, axes[-1])
    figure.suptitle(f"{settings.task}: {settings.description}", fontsize="medium")
    figure.savefig(path)


def _legend(figure: Any, ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    labels = [shorten(label) for label in labels]
    width = figure.get_figwidth() * DPI  # pixels; about 7 per character of a small font
    columns = max(1, min(3, len(labels), int(width // (7 * max(map(len, labels), default=1) + 40))))
    figure.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize="small")


def shorten(label: str, width: int = 60) -> str:
    """``label`` cut to ``width`` characters, an ellipsis marking the cut."""
    return label if len(label) <= width else label[: width - 1] + "…"


def schedule_names(results: list[RunResult]) -> list[str]:
    """The hyperparameters worth drawing: each that changes in some run, and the
    learning rate; at most six."""
    names: list[str] = []
    for result in results:
        for name, values in result.hyperparameters.items():
            varies = len(values) > 1 and max(values) != min(values)
            if (varies or name in ("lr", "learning_rate")) and name not in names:
                names.append(name)
    return names[:6]


def plot_schedules(path: Path, results: list[RunResult]) -> None:
    """Each hyperparameter that changes in some run (and ``lr``), against the step."""
    names = schedule_names(results) or ["lr"]
    figure, axes = _figure(len(names), (max(4.6 * len(names), 8.0), 3.8))
    for ax, name in zip(axes, names):
        for i, result in enumerate(results):
            values = result.hyperparameters.get(name)
            if values:
                ax.plot(
                    np.arange(len(values)),
                    values,
                    color=color(i),
                    linewidth=1.8,
                    label=result.label,
                )
        peaks = [max(r.hyperparameters[name]) for r in results if r.hyperparameters.get(name)]
        if min(peaks, default=0) > 0 and max(peaks) > 10 * min(peaks):
            ax.set_yscale("log", nonpositive="mask")  # runs of very different sizes
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    _legend(figure, axes[0])
    figure.suptitle("hyperparameters in force at each step", fontsize="medium")
    figure.savefig(path)


def plot_time(path: Path, results: list[RunResult]) -> None:
    """Median time of a step per run: forward and backward, then the update."""
    figure, (ax,) = _figure(1, (8.0, 1.6 + 0.5 * len(results)))
    labels = [shorten(result.label, 40) for result in results]
    y = np.arange(len(results))[::-1]
    update = np.array([result.ms_per_update for result in results])
    model = np.array([result.ms_per_model for result in results])
    ax.barh(y, model, color="0.75", label="batch, forward and backward")
    ax.barh(
        y,
        update,
        left=model,
        color=[color(i) for i in range(len(results))],
        label="optimizer update (+ EMA)",
    )
    for yi, total in zip(y, model + update):
        ax.text(total, yi, f" {total:.2f} ms", va="center", fontsize="small")
    ax.set_yticks(y, labels)
    ax.set_xlabel("median milliseconds per step")
    ax.set_xlim(0, 1.25 * max(float((model + update).max()), 1e-3))
    ax.grid(axis="x", alpha=0.3)
    _legend(figure, ax)
    figure.savefig(path)


# --------------------------------------------------------------------------------------
# The folder
# --------------------------------------------------------------------------------------


def write_report(out: Path, settings: Settings, results: list[RunResult], config: str) -> Path:
    """Write the figures, ``report.html``, ``results.json`` and ``config.toml`` into
    ``out`` (created if needed); returns the HTML file's path."""
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(out / "curves.png", settings, results)
    plot_schedules(out / "schedules.png", results)
    plot_time(out / "time.png", results)
    (out / "config.toml").write_text(config)
    data = {
        "task": settings.task,
        "description": settings.description,
        "steps": settings.steps,
        "seed": settings.seed,
        "device": settings.device,
        "versions": _versions(),
        "runs": [result.as_dict() for result in results],
    }
    (out / "results.json").write_text(json.dumps(data, indent=1, default=_json_default))
    page = out / "report.html"
    page.write_text(_html(settings, results, config))
    return page


def _json_default(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else str(value)


def _versions() -> dict[str, str]:
    return {
        "descend": descend.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _html(settings: Settings, results: list[RunResult], config: str) -> str:
    header, rows = table_rows(settings, results)
    e = html.escape
    head = "".join(f"<th>{e(name)}</th>".replace("\n", "<br>") for name in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>\n" for row in rows
    )
    versions = ", ".join(f"{name} {version}" for name, version in _versions().items())
    figures = {
        "curves.png": "Training loss and held-out metrics",
        "schedules.png": "Hyperparameter schedules",
        "time.png": "Time per step",
    }
    images = "".join(
        f'<figure><img src="{name}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption>'
        "</figure>\n"
        for name, caption in figures.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>descend report: {e(settings.task)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ padding: 0.3em 0.8em; border-bottom: 1px solid #ddd; }}
td:not(:first-child), th:not(:first-child) {{ text-align: right; }}
img {{ max-width: 100%; }}
figure {{ margin: 1.5em 0; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style>
</head>
<body>
<h1>descend report: {e(settings.task)}</h1>
<p>{e(settings.description)}<br>
{settings.steps} steps, seed {settings.seed}, device {e(settings.device)}; {e(versions)}</p>
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{body}</tbody>
</table>
<p>train loss: mean of the last 5% of steps; test: the held-out evaluation after the last
step; ms: median per step; state memory: the optimizer's state tensors (+ the EMA copy).</p>
{images}<h2>Configuration</h2>
<p>Repeat this comparison with <code>descend compare --config config.toml</code>:</p>
<pre>{e(config)}</pre>
</body>
</html>
"""
