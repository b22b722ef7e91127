"""Bounded reads of the journal's logs: only the physical last line is read."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from superloop_ops.journal import tail


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", ""),
        (b"a\n", "a"),
        (b"a\nb\n", "b"),
        (b"a\nb", "b"),
        (b"a\n\n", ""),
        (b"\n", ""),
    ],
)
def test_last_line_like_tail(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(content)
    assert tail.fetch_last_line(path) == expected


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert tail.fetch_last_line(tmp_path / "absent") is None
    assert tail.fetch_last_jsonl_row(tmp_path / "absent") is None


def test_long_last_line_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    big = {"payload": "y" * 50_000}
    path.write_text(json.dumps({"first": True}) + "\n" + json.dumps(big) + "\n")
    assert tail.fetch_last_jsonl_row(path) == big


def test_large_log_is_not_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.jsonl"
    row = json.dumps({"status": "confirmed", "pad": "x" * 200}) + "\n"
    path.write_text(row * 20_000 + json.dumps({"status": "ambiguous"}) + "\n")
    read_sizes: list[int] = []
    original_open = Path.open

    def spying_open(self: Path, *args: object, **kwargs: object) -> object:
        handle = original_open(self, *args, **kwargs)  # type: ignore[call-overload]
        original_read = handle.read

        def read(size: int = -1) -> bytes:
            read_sizes.append(size)
            data: bytes = original_read(size)
            return data

        handle.read = read
        return handle

    monkeypatch.setattr(Path, "open", spying_open)
    assert tail.fetch_last_jsonl_row(path) == {"status": "ambiguous"}
    assert -1 not in read_sizes
    assert sum(read_sizes) < 64 * 1024


def test_unparseable_last_line_reads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"ok": 1}\n{"torn"')
    assert tail.fetch_last_jsonl_row(path) is None


def test_the_last_line_of_a_log_with_one_huge_row_is_read_in_linear_time(tmp_path: Path) -> None:
    """A fleet reconcile row at 5,000 Loops is megabytes long: reading it back block by block must
    not rescan what it already read (it cost 1.4 CPU-s for a 4 MB row, 2.8 s of a 4 s fleet pass)."""
    log = tmp_path / "reconcile.jsonl"
    log.write_bytes(b'{"old": 1}\n' + b'{"results": "' + b"x" * 8_000_000 + b'"}\n')
    began = time.process_time()
    lines = tail.fetch_last_lines(log, 4)
    spent = time.process_time() - began
    assert lines[0] == '{"old": 1}'
    assert len(lines[1]) == 8_000_000 + 15
    assert spent < 0.5, spent
