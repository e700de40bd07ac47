"""Replay results for people and CI: a terminal table, and JUnit XML a CI system can show."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from pathlib import Path

from packager.replay.runner import ModelReplay
from packager.tables import plural, table


def replay_table(replays: Sequence[ModelReplay]) -> str:
    """One row per case and protocol, with what differed under each failure."""
    rows: list[list[str]] = []
    details: list[str] = []
    for replay in replays:
        if replay.error is not None:
            rows.append([replay.model, "-", "-", "ERROR", "-"])
            details.append(f"{replay.model}: {replay.error}")
        for result in replay.results:
            protocol = f"{result.protocol} {result.via}".strip()
            sent = result.not_sent is None
            rows.append(
                [
                    replay.model,
                    result.case,
                    protocol,
                    result.status,
                    f"{result.seconds * 1000:.1f}" if sent else "-",
                ]
            )
            said = result.problems if sent else (f"not sent: {result.not_sent}",)
            details.extend(f"{replay.model} {result.case} [{protocol}]: {problem}" for problem in said)
    text = table(rows, ["model", "case", "protocol", "result", "ms"])
    return text + ("\n\n" + "\n".join(details) if details else "")


def summary(replays: Sequence[ModelReplay]) -> str:
    """`8 passed, 2 failed` (and how many were not sent, and how many models did not run)."""
    results = [result for replay in replays for result in replay.results]
    passed = sum(result.passed for result in results)
    failed = sum(result.failed for result in results)
    not_sent = len(results) - passed - failed
    errors = sum(replay.error is not None for replay in replays)
    text = f"{passed} passed, {failed} failed" + (f", {not_sent} not sent" if not_sent else "")
    return text + (f", {plural(errors, 'model')} did not run" if errors else "")


def write_junit(
    replays: Sequence[ModelReplay], path: Path, properties: Mapping[str, str] | None = None
) -> None:
    """JUnit XML: a testsuite per model directory, a testcase per case and protocol; `properties` (the
    runtime and launcher the cases ran on) on every suite."""
    suites = ElementTree.Element("testsuites", name="packager replay")
    for replay in replays:
        failures = sum(result.failed for result in replay.results)
        suite = ElementTree.SubElement(
            suites,
            "testsuite",
            name=replay.model,
            tests=str(len(replay.results) or 1),
            failures=str(failures),
            errors=str(int(replay.error is not None)),
            time=f"{sum(result.seconds for result in replay.results):.4f}",
        )
        if properties:
            listed = ElementTree.SubElement(suite, "properties")
            for name, value in sorted(properties.items()):
                ElementTree.SubElement(listed, "property", name=name, value=value)
        if replay.error is not None:
            case = ElementTree.SubElement(suite, "testcase", classname=replay.model, name="serve")
            ElementTree.SubElement(case, "error", message=replay.error.splitlines()[0]).text = replay.error
        for result in replay.results:
            case = ElementTree.SubElement(
                suite,
                "testcase",
                classname=f"{replay.model}.{result.protocol}",
                name=result.case,
                time=f"{result.seconds:.4f}",
            )
            if result.not_sent is not None:
                ElementTree.SubElement(case, "skipped", message=result.not_sent)
            elif not result.passed:
                ElementTree.SubElement(case, "failure", message=result.problems[0]).text = "\n".join(
                    result.problems
                )
    path.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
