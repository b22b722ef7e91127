"""The sprite service's idempotency store on disk (issue 10, item 17): append-only and bounded."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from superloop_ops.journal import service_idempotency
from superloop_ops.journal.service_idempotency import FileIdempotencyStore

LOOP = "demo-loop"


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now


def _response(n: int) -> dict[str, object]:
    return {"ok": True, "exitCode": 0, "replayed": False, "result": {"n": n, "pad": "x" * 800}}


def _store_file(repo: Path) -> Path:
    return repo / ".superloop" / "ops-manager" / LOOP / service_idempotency.STORE_FILE


def test_put_appends_one_row_and_never_rewrites_the_store(tmp_path: Path) -> None:
    store = FileIdempotencyStore(tmp_path)
    store.put(LOOP, "k-0", _response(0))
    path = _store_file(tmp_path)
    inode, size = path.stat().st_ino, path.stat().st_size
    first_row = path.read_bytes()
    for n in range(1, 300):
        store.put(LOOP, f"k-{n}", _response(n))
    assert path.stat().st_ino == inode  # no whole-file rewrite (the old store renamed a new copy in)
    assert len(path.read_bytes().splitlines()) == 300
    assert path.read_bytes()[:size] == first_row
    assert store.get(LOOP, "k-7") == _response(7)
    assert FileIdempotencyStore(tmp_path).get(LOOP, "k-299") == _response(299)  # survives a restart


def test_keys_expire_after_the_replay_window(tmp_path: Path) -> None:
    clock = Clock()
    store = FileIdempotencyStore(tmp_path, now_fn=clock, replay_window=dt.timedelta(hours=1))
    store.put(LOOP, "old", _response(1))
    clock.now += dt.timedelta(minutes=59)
    assert store.get(LOOP, "old") == _response(1)
    clock.now += dt.timedelta(minutes=2)
    assert store.get(LOOP, "old") is None


def test_the_log_is_compacted_to_the_newest_live_keys(tmp_path: Path) -> None:
    clock = Clock()
    store = FileIdempotencyStore(tmp_path, now_fn=clock, replay_window=dt.timedelta(hours=1), max_entries=10)
    for n in range(5):
        store.put(LOOP, f"stale-{n}", _response(n))
    clock.now += dt.timedelta(hours=2)
    for n in range(15):
        store.put(LOOP, f"live-{n}", _response(n))
    rows = [json.loads(line) for line in _store_file(tmp_path).read_text().splitlines()]
    assert len(rows) <= 2 * 10
    assert not any(row["key"].startswith("stale-") for row in rows)
    fresh = FileIdempotencyStore(tmp_path, now_fn=clock, replay_window=dt.timedelta(hours=1), max_entries=10)
    assert fresh.get(LOOP, "live-14") == _response(14)
    assert fresh.get(LOOP, "stale-0") is None


def test_a_torn_last_row_is_ignored_and_the_next_put_stays_whole(tmp_path: Path) -> None:
    store = FileIdempotencyStore(tmp_path)
    store.put(LOOP, "a", _response(1))
    with _store_file(tmp_path).open("ab") as handle:
        handle.write(b'{"key":"b","storedAt":"20')  # a writer killed mid-line
    fresh = FileIdempotencyStore(tmp_path)
    assert fresh.get(LOOP, "b") is None
    fresh.put(LOOP, "c", _response(3))
    again = FileIdempotencyStore(tmp_path)
    assert again.get(LOOP, "a") == _response(1)
    assert again.get(LOOP, "c") == _response(3)


def test_the_former_whole_document_store_is_still_replayed(tmp_path: Path) -> None:
    legacy = _store_file(tmp_path).with_name(service_idempotency.LEGACY_STORE_FILE)
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"idem-1": _response(1)}))
    store = FileIdempotencyStore(tmp_path)
    assert store.get(LOOP, "idem-1") == _response(1)
    store.put(LOOP, "idem-2", _response(2))
    assert FileIdempotencyStore(tmp_path).get(LOOP, "idem-1") == _response(1)


def test_a_second_process_sees_keys_appended_by_the_first(tmp_path: Path) -> None:
    first, second = FileIdempotencyStore(tmp_path), FileIdempotencyStore(tmp_path)
    first.put(LOOP, "a", _response(1))
    assert second.get(LOOP, "a") == _response(1)
    first.put(LOOP, "b", _response(2))
    assert second.get(LOOP, "b") == _response(2)
