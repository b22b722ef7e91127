"""Run ``superloop-ops`` in-process: (exit code, stdout parsed, stderr).

Stdout that is one JSON object is parsed; anything else is returned as stripped text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from superloop_ops.cli import main as cli_main

__all__ = ["CliRun", "build_cli_runner"]

CliRun = Callable[..., tuple[int, Any, str]]


def build_cli_runner(capsys: pytest.CaptureFixture[str]) -> CliRun:
    def run(*argv: str) -> tuple[int, Any, str]:
        code = cli_main.main(list(argv))
        captured = capsys.readouterr()
        out = captured.out.strip()
        return code, (json.loads(out) if out.startswith("{") else out), captured.err

    return run
