"""A load test's report: a terminal table, a JSON document, Markdown a CI summary shows, and a PNG of
latency (p50, p99) against throughput per level. matplotlib is imported only when the plot is drawn."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from packager.loadtest.analysis import Level, knee, recommended_target
from packager.tables import markdown_table, table

HEADER = ["concurrency", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"]
# A stream's levels: to its first response, then to its final flag (what the objective judges).
STREAM_HEADER = [
    *HEADER[:4],
    *(f"first {column}" for column in HEADER[4:]),
    *(f"last {c}" for c in HEADER[4:]),
]


@dataclass(frozen=True)
class LoadReport:
    """Every level of one model's load test, with the objective and headroom it was judged by."""

    model: str
    target: str
    duration: float
    p99_ms: float
    headroom: float
    levels: tuple[Level, ...]
    streamed: bool = False  # a decoupled model's streams: first and last response times

    @property
    def knee(self) -> Level | None:
        return knee(self.levels, self.p99_ms)

    @property
    def recommendation(self) -> float | None:
        chosen = self.knee
        return None if chosen is None else recommended_target(chosen.throughput, self.headroom)

    def verdict(self) -> str:
        """The knee and the target-tracking value it suggests, in one or two sentences; or, when every
        request failed, that the requests fail, which no concurrency changes."""
        chosen = self.knee
        if self.levels and all(level.errors == level.requests > 0 for level in self.levels):
            first = next((level.first_error for level in self.levels if level.first_error), "")
            return (
                f"Every request failed, at every concurrency (the first: {first}): not a load problem. Fix what "
                f"the error says (`packager replay {self.model}` shows each case's answer), then load-test again."
            )
        if chosen is None:
            return (
                f"No level meets p99 <= {self.p99_ms:g} ms without errors: no knee, no target-tracking value "
                "recommended (lower the concurrency, raise --p99-ms, or speed the model up)."
            )
        return (
            f"Knee: concurrency {chosen.concurrency}, {chosen.throughput:.1f} req/s at p99 "
            f"{chosen.p99_ms:.1f} ms{' to the last response' if self.streamed else ''} (objective "
            f"{self.p99_ms:g} ms). SageMakerVariantInvocationsPerInstance "
            f"target: {self.recommendation:.0f} = {chosen.throughput:.1f} req/s x 60 x headroom {self.headroom:g}."
        )

    def to_json(self) -> dict[str, object]:
        chosen = self.knee
        recommendation = self.recommendation
        return {
            "model": self.model,
            "target": self.target,
            "duration_s": self.duration,
            "p99_objective_ms": self.p99_ms,
            "headroom": self.headroom,
            "streamed": self.streamed,
            "levels": [level.to_json() for level in self.levels],
            "knee": None if chosen is None else chosen.concurrency,
            "invocations_per_instance_target": None if recommendation is None else round(recommendation, 1),
            "verdict": self.verdict(),
        }


def _rows(report: LoadReport) -> tuple[list[list[str]], list[str]]:
    """The levels' rows, and their header (a stream's times to its first response first)."""

    def ms(*values: float) -> list[str]:
        return ["-" if math.isnan(value) else f"{value:.1f}" for value in values]

    rows = [
        [str(level.concurrency), str(level.requests), str(level.errors), f"{level.throughput:.1f}"]
        + (ms(level.first_p50_ms, level.first_p95_ms, level.first_p99_ms) if report.streamed else [])
        + ms(level.p50_ms, level.p95_ms, level.p99_ms)
        for level in report.levels
    ]
    return rows, STREAM_HEADER if report.streamed else HEADER


def loadtest_table(report: LoadReport) -> str:
    """The levels as a terminal table, then the verdict."""
    return f"{table(*_rows(report))}\n\n{report.verdict()}"


def loadtest_markdown(report: LoadReport) -> str:
    """A Markdown section: heading, the levels' table and the verdict."""
    heading = f"### Load test: {report.model} ({report.target}, {report.duration:g} s per level)"
    return f"{heading}\n\n{markdown_table(*_rows(report))}\n\n{report.verdict()}\n"


def plot_latency(report: LoadReport, path: Path) -> None:
    """A PNG of p50 and p99 latency against throughput, one point per level (labelled by concurrency),
    with the objective as a line."""
    import matplotlib  # only the plot pays for matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    levels = [level for level in report.levels if not math.isnan(level.p99_ms)]
    figure, axes = pyplot.subplots(figsize=(7, 4.5), dpi=100)
    try:
        throughput = [level.throughput for level in levels]
        last = " (last response)" if report.streamed else ""
        if report.streamed:
            axes.plot(
                throughput, [level.first_p50_ms for level in levels], "^--", label="p50 (first response)"
            )
        axes.plot(throughput, [level.p50_ms for level in levels], "o-", label=f"p50{last}")
        axes.plot(throughput, [level.p99_ms for level in levels], "s-", label=f"p99{last}")
        for level in levels:
            axes.annotate(
                f"c={level.concurrency}",
                (level.throughput, level.p99_ms),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        highest = max((level.p99_ms for level in levels), default=report.p99_ms)
        if report.p99_ms <= 3 * highest:  # an objective far above every level would flatten the curves
            axes.axhline(
                report.p99_ms,
                color="grey",
                linestyle="--",
                linewidth=1,
                label=f"p99 objective {report.p99_ms:g} ms",
            )
        axes.set_xlabel("throughput (requests/s)")
        axes.set_ylabel("latency (ms)")
        axes.set_title(f"{report.model}: latency against throughput ({report.target})", fontsize=10)
        axes.grid(True, alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        pyplot.close(figure)


def write_reports(report: LoadReport, directory: Path) -> dict[str, Path]:
    """loadtest.json, loadtest.md and loadtest.png in `directory` (made if missing), by kind."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {
        "json": directory / "loadtest.json",
        "markdown": directory / "loadtest.md",
        "png": directory / "loadtest.png",
    }
    written["json"].write_text(json.dumps(report.to_json(), indent=2) + "\n")
    written["markdown"].write_text(loadtest_markdown(report))
    plot_latency(report, written["png"])
    return written
