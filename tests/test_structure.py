"""The codebase's shape (issue 15): one concept per module, small enough to read in one sitting.
No Python module in sfu/ or control_api/ over 450 lines and no C source over 600 (migrations are
history: they are never edited, so they are not held to it). The private-name rule is checked in
tests/sfu/test_adapter_contract.py."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON_LIMIT = 450
C_LIMIT = 600


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_python_module_in_the_sfu_or_the_control_api_is_over_450_lines() -> None:
    modules = [p for folder in ("sfu", "control_api") for p in (ROOT / folder).rglob("*.py")
               if "migrations" not in p.parts]
    assert len(modules) > 100
    long = {str(p.relative_to(ROOT)): lines(p) for p in modules if lines(p) > PYTHON_LIMIT}
    assert long == {}, f"split these by concept: {long}"


def test_no_c_source_is_over_600_lines() -> None:
    sources = [*(ROOT / "sfu").rglob("*.c"), *(ROOT / "sfu").rglob("*.h")]
    assert len(sources) >= 10
    long = {str(p.relative_to(ROOT)): lines(p) for p in sources if lines(p) > C_LIMIT}
    assert long == {}, f"split these by mechanism: {long}"
