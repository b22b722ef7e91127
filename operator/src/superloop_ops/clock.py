"""Injectable clocks: the core takes ``now`` as an argument; the shell asks a Clock for it."""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol

__all__ = ["Clock", "FrozenClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> dt.datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall clock, UTC, truncated to whole seconds (the contract's timestamp precision)."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FrozenClock:
    """A clock for tests: ``sleep`` advances it instead of waiting."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start

    def now(self) -> dt.datetime:
        return self._now

    def sleep(self, seconds: float) -> None:
        self._now = self._now + dt.timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.sleep(seconds)
