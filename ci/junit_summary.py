"""Summarize the JUnit XML reports that `./pants test --test-report` writes, as pytest and Markdown would.

Usage: python3 ci/junit_summary.py REPORT_DIR [MARKDOWN_FILE]
Prints one line per test file and a pytest-style total; writes a Markdown table when asked (for a CI
job summary such as $GITHUB_STEP_SUMMARY). Exits 1 when any test failed or errored, or none ran.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Suite:
    name: str
    tests: int
    failures: int
    errors: int
    skipped: int
    seconds: float

    @property
    def passed(self) -> int:
        return self.tests - self.failures - self.errors - self.skipped


def read_suites(report_dir: Path) -> list[Suite]:
    suites = []
    for path in sorted(report_dir.glob("*.xml")):
        for element in ElementTree.parse(path).getroot().iter("testsuite"):
            suites.append(
                Suite(
                    name=path.stem,
                    tests=int(element.get("tests", 0)),
                    failures=int(element.get("failures", 0)),
                    errors=int(element.get("errors", 0)),
                    skipped=int(element.get("skipped", 0)),
                    seconds=float(element.get("time", 0.0)),
                )
            )
    return suites


def total_line(suites: list[Suite]) -> str:
    counts = {
        "passed": sum(suite.passed for suite in suites),
        "failed": sum(suite.failures for suite in suites),
        "errors": sum(suite.errors for suite in suites),
        "skipped": sum(suite.skipped for suite in suites),
    }
    parts = ", ".join(f"{count} {label}" for label, count in counts.items() if count or label == "passed")
    seconds = sum(suite.seconds for suite in suites)
    return f"{parts} in {seconds:.2f}s ({len(suites)} test files)"


def markdown(suites: list[Suite]) -> str:
    rows = ["| test file | passed | failed | errors | skipped | seconds |", "|---|---:|---:|---:|---:|---:|"]
    for suite in suites:
        rows.append(
            f"| {suite.name} | {suite.passed} | {suite.failures} | {suite.errors} | {suite.skipped} | {suite.seconds:.2f} |"
        )
    return "\n".join(["## Tests", "", *rows, "", f"**{total_line(suites)}**", ""])


def main(argv: list[str]) -> int:
    suites = read_suites(Path(argv[1]))
    if not suites:
        print(f"==== no test reports in {argv[1]}: the tests did not run (see the output above) ====")
        return 1
    for suite in suites:
        status = "ok  " if not (suite.failures or suite.errors) else "FAIL"
        print(f"{status} {suite.name}: {suite.passed}/{suite.tests} passed in {suite.seconds:.2f}s")
    print(f"==== {total_line(suites)} ====")
    if len(argv) > 2:
        Path(argv[2]).parent.mkdir(parents=True, exist_ok=True)
        Path(argv[2]).write_text(markdown(suites))
    return 1 if any(suite.failures or suite.errors for suite in suites) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
