"""Replay reports: the terminal table and JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from packager.replay import CaseResult, ModelReplay, replay_table, summary, write_junit

REPLAYS = [
    ModelReplay(
        "digits",
        [
            CaseResult("digits", "seven", "http", True, 0.0021),
            CaseResult(
                "digits",
                "seven",
                "grpc",
                False,
                0.0019,
                ("LABEL: 1 of 1 values differ: [0, 0] expected 7, got 1",),
            ),
        ],
    ),
    ModelReplay("churn", error="Triton refused to load 'churn': boom"),
]


def test_table_lists_every_result_and_the_differences_below() -> None:
    text = replay_table(REPLAYS)
    assert text.splitlines()[:5] == [
        "model   case   protocol  result  ms",
        "------  -----  --------  ------  ---",
        "digits  seven  http      ok      2.1",
        "digits  seven  grpc      FAIL    1.9",
        "churn   -      -         ERROR   -",
    ]
    assert "digits seven [grpc]: LABEL: 1 of 1 values differ: [0, 0] expected 7, got 1" in text
    assert "churn: Triton refused to load 'churn': boom" in text
    assert summary(REPLAYS) == "1 passed, 1 failed, 1 model did not run"


def test_junit_has_a_suite_per_model_and_a_failure_per_failed_case(tmp_path: Path) -> None:
    write_junit(REPLAYS, tmp_path / "junit.xml")
    root = ElementTree.parse(tmp_path / "junit.xml").getroot()
    digits, churn = root.findall("testsuite")
    assert (digits.get("name"), digits.get("tests"), digits.get("failures")) == ("digits", "2", "1")
    failure = digits.find("testcase[@classname='digits.grpc']/failure")
    assert failure is not None and "expected 7, got 1" in (failure.get("message") or "")
    assert churn.get("errors") == "1" and churn.find("testcase/error") is not None
