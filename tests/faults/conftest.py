"""Fixtures for fault tests: a set of real processes, killed whatever happens, whose output is
printed when the test fails."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.faults.processes import ProcessSet


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                           pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessSet]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    processes = ProcessSet(log_dir)
    try:
        yield processes
    finally:
        processes.close()  # every process group, whatever state the test left it in
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"\n----- process output (logs in {log_dir}) -----\n{processes.dump()}")
