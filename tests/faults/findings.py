"""Collect every check and measurement of a fault test, then fail once with all of them.

A fault test has many outcomes worth knowing at once (status, money, timing): stopping at the
first failed assert would hide the rest. `check` records, `measure` prints a number, `verify`
fails the test listing every failed check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Findings:
    name: str
    checks: list[tuple[bool, str]] = field(default_factory=list)
    measures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        print(flush=True)  # pytest -s prints the test's progress dot first: start on a line of our own

    def check(self, ok: bool, what: str, observed: Any = None) -> bool:
        line = what if observed is None else f"{what} (observed: {observed})"
        self.checks.append((bool(ok), line))
        print(f"[{self.name}] {'ok  ' if ok else 'FAIL'} {line}", flush=True)
        return bool(ok)

    def measure(self, what: str, seconds: float | None) -> None:
        text = f"{what}: {'not observed' if seconds is None else f'{seconds:.2f} s'}"
        self.measures.append(text)
        print(f"[{self.name}] MEASURED {text}", flush=True)

    def note(self, text: str) -> None:
        self.measures.append(text)
        print(f"[{self.name}] {text}", flush=True)

    def report(self) -> str:
        lines = [f"{'ok  ' if ok else 'FAIL'} {line}" for ok, line in self.checks]
        return "\n".join([*lines, *self.measures])

    def verify(self) -> None:
        failed = [line for ok, line in self.checks if not ok]
        assert not failed, f"{len(failed)} of {len(self.checks)} checks failed:\n" + "\n".join(
            f"  - {line}" for line in failed) + "\nall findings:\n" + self.report()
