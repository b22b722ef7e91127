"""Every scenario of the reference's fleet suite (38 bats tests) is ported by a named test.

Each porting test carries a ``# fleet.bats #N: <scenario>`` comment right above it (several
lines when it ports several). This test reads those comments, so a deleted or renamed port
shows up as a missing number instead of silently shrinking the coverage.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORT_FILES = (
    ROOT / "tests" / "component" / "test_fleet_cli.py",
    ROOT / "tests" / "unit" / "test_fleet_registry.py",
    ROOT / "tests" / "unit" / "test_fleet_policy.py",
    ROOT / "tests" / "unit" / "test_fleet_status.py",
    ROOT / "tests" / "unit" / "test_handoff.py",
)
SCENARIOS = range(1, 39)
MARK = re.compile(r"^# fleet\.bats #(\d+): (\S.*)$")


def _marks() -> list[tuple[Path, int, int, str]]:
    """(file, line index, scenario number, the line the comment stands above) for every mark."""
    found = []
    for path in PORT_FILES:
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            match = MARK.match(line)
            if match:
                below = next((nxt for nxt in lines[index + 1 :] if not MARK.match(nxt)), "")
                found.append((path, index + 1, int(match.group(1)), below))
    return found


def test_every_reference_scenario_is_ported() -> None:
    numbers = {number for _, _, number, _ in _marks()}
    assert sorted(set(SCENARIOS) - numbers) == []


def test_marks_name_real_scenarios_and_stand_above_a_test() -> None:
    for path, line, number, below in _marks():
        where = f"{path.relative_to(ROOT)}:{line}"
        assert number in SCENARIOS, f"{where}: no scenario #{number} in fleet.bats"
        assert below.startswith(("def test_", "async def test_", "@pytest.")), (
            f"{where}: the mark must stand right above a test, not {below!r}"
        )


def test_a_scenario_is_marked_once_per_file() -> None:
    seen: dict[tuple[Path, int], int] = {}
    for path, line, number, _ in _marks():
        previous = seen.setdefault((path, number), line)
        assert previous == line, f"{path.name}: #{number} marked at lines {previous} and {line}"
