"""ci/junit_summary.py turns Pants' JUnit reports into the summary CI prints."""

from __future__ import annotations

from pathlib import Path

from ci.junit_summary import main

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="{errors}" failures="{failures}" skipped="1" tests="{tests}" time="{time}">
</testsuite></testsuites>"""


def _write(
    directory: Path, name: str, tests: int, failures: int = 0, errors: int = 0, time: float = 1.5
) -> None:
    (directory / f"{name}.xml").write_text(
        REPORT.format(tests=tests, failures=failures, errors=errors, time=time)
    )


def test_all_passing_prints_totals_and_markdown(tmp_path: Path) -> None:
    _write(tmp_path, "tests.test_a", tests=5)
    _write(tmp_path, "tests.test_b", tests=3, time=0.25)
    summary = tmp_path / "summary.md"
    assert main(["junit_summary", str(tmp_path), str(summary)]) == 0
    assert "| tests.test_a | 4 | 0 | 0 | 1 | 1.50 |" in summary.read_text()
    assert "**6 passed, 2 skipped in 1.75s (2 test files)**" in summary.read_text()


def test_a_failure_or_an_empty_report_dir_fails(tmp_path: Path) -> None:
    assert main(["junit_summary", str(tmp_path)]) == 1
    _write(tmp_path, "tests.test_a", tests=5, failures=1, errors=1)
    assert main(["junit_summary", str(tmp_path)]) == 1
