"""Loop passes on more than one core (issue 12): worker processes for passes with a large backlog.

Every pass runs in a thread of the operator (the scheduler's pool, or kopf's for create, update
and resume), all under one GIL. A pass that ingests a large backlog of events (after a restart,
or a burst) is CPU work: parsing, projecting, hashing. With ``SUPERLOOP_LOOP_PASS_PROCESSES`` set
to N, such a pass's file side (``loop_controller.run_loop_pass_job``: the reconcile pass and the
status surface read) runs in one of N worker processes instead, and only the small result (the
view and the engine's result) comes back; the calling thread waits for it, still holding the
Loop's lock, and does the Kubernetes side (status patch, Events, metrics) as before. A pass with
fewer new event bytes than ``SUPERLOOP_LOOP_PASS_PROCESS_MIN_BYTES`` stays in its thread: the
round trip would cost about what it saves.

- **Workers.** N single-process executors, each from the ``forkserver`` context (the operator
  has threads and an event loop: it is never forked; the fork server preloads the pass code once).
  A Loop goes to the same worker while that worker is free, so the worker's per-process memos of
  the Loop's events file (``transports.local``: its digest, the last position) stay warm; when it
  is busy, to the least busy one.
- **Locks.** The pass in a worker takes the journal's ``flock`` (``<ops>/.reconcile.lock``, in
  ``reconcile_pass.run_reconcile``) as a pass in a thread does, so a worker's pass, a pass in the
  operator's own process and one in another (the CLI) never interleave on one journal; the
  calling thread keeps the Loop's in-process lock (``OperatorContext.lock_for``) for the whole
  pass. A control run (a HandoffIntent) takes ``<ops>/.control.lock`` and writes other files
  (whole-line appends, atomic renames): it never excluded a pass in a thread either, and relates
  to a pass in a worker exactly as to one in a thread.
- **A worker that dies** (killed, out of memory) fails its pass with ``PassWorkerLostError``, a
  temporary error: the pass is reported blocked (``internal_error``) and retried after
  ``WORKER_LOST_RETRY_SECONDS`` like any failed pass; the executor is replaced on the next pass
  and the reason logged. The journal is what a killed CLI run leaves (its commits are atomic and
  ordered, the cursor after the state: ``journal.commit``): the next pass reads no event twice
  and loses none. The lock dies with the process.
- **A worker that hangs**: the calling thread waits at most ``SUPERLOOP_LOOP_PASS_PROCESS_TIMEOUT_SECONDS``
  (the time the pass waited for its worker included), then kills that worker (SIGKILL), which
  releases the journal lock, and fails the pass the same way; passes queued on that worker fail
  with it and are retried. So a hung worker holds one scheduler thread for at most the timeout.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.context
import os
import signal
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from superloop_ops.controllers import loop_controller
from superloop_ops.core.loop import loop_resource
from superloop_ops.engine.loop import reconcile_pass
from superloop_ops.errors import DependencyNotReadyError

__all__ = ["WORKER_LOST_RETRY_SECONDS", "LoopPassPool", "PassOutcome", "PassWorkerLostError"]

log = logging.getLogger(__name__)

_A = TypeVar("_A")
_R = TypeVar("_R")

WORKER_LOST_RETRY_SECONDS = 5.0
"""How soon a pass whose worker was lost is tried again."""

_PRELOAD = ["superloop_ops.controllers.loop_controller"]
_LOG_FORMAT = "%(asctime)s [%(levelname)s] %(name)s (pass worker %(process)d): %(message)s"

PassOutcome = tuple[loop_resource.LoopPassView, reconcile_pass.ReconcileResult]


class PassWorkerLostError(DependencyNotReadyError):
    """The worker process of a pass died, or was killed after the timeout, before it answered."""

    def __init__(self, message: str, delay: float = WORKER_LOST_RETRY_SECONDS) -> None:
        super().__init__(message, delay)


def _start_worker(pid: Any, level: int) -> None:
    """In each worker: publish its pid (the parent kills a hung one by it), log as the parent
    does, and leave an interrupt from the terminal to the parent (which stops the pool)."""
    pid.value = os.getpid()
    logging.basicConfig(level=level, format=_LOG_FORMAT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_pid(_: int) -> int:
    return os.getpid()


class _Worker:
    """One worker process behind a one-process executor, replaced when it is lost."""

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        self._context = context
        self._guard = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._pid: Any = None
        self.in_flight = 0  # changed under the pool's guard

    def submit(self, fn: Callable[[_A], _R], argument: _A) -> tuple[ProcessPoolExecutor, Future[_R]]:
        with self._guard:
            executor = self._executor or self._start()
            try:
                return executor, executor.submit(fn, argument)
            except BrokenProcessPool:  # it died while idle: no pass was lost, start another
                log.warning("a Loop pass worker process died while idle; starting another")
                executor.shutdown(wait=False, cancel_futures=True)
                executor = self._start()
                return executor, executor.submit(fn, argument)

    def _start(self) -> ProcessPoolExecutor:
        self._pid = self._context.Value("i", 0, lock=False)
        self._executor = ProcessPoolExecutor(
            1,
            mp_context=self._context,
            initializer=_start_worker,
            initargs=(self._pid, logging.getLogger().getEffectiveLevel()),
        )
        return self._executor

    @property
    def pid(self) -> int | None:
        with self._guard:
            value = int(self._pid.value) if self._executor is not None and self._pid is not None else 0
        return value or None

    def discard(self, executor: ProcessPoolExecutor, *, kill: bool) -> None:
        """Drop ``executor`` (unless another thread already replaced it), killing its process."""
        with self._guard:
            if self._executor is not executor:
                return
            pid = int(self._pid.value) if self._pid is not None else 0
            self._executor = None
        if kill and pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._guard:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class LoopPassPool:
    """``processes`` worker processes for the file side of Loop passes (thread-safe)."""

    def __init__(
        self,
        processes: int,
        *,
        min_bytes: int,
        timeout_seconds: float,
        start_method: str = "forkserver",
    ) -> None:
        if processes < 1:
            raise ValueError("a pass pool needs at least one process")
        context = multiprocessing.get_context(start_method)
        if isinstance(context, multiprocessing.context.ForkServerContext):
            context.set_forkserver_preload(_PRELOAD)
        self.min_bytes = min_bytes
        self.timeout_seconds = timeout_seconds
        self._workers = [_Worker(context) for _ in range(processes)]
        self._guard = threading.Lock()
        self.passes = 0
        """Passes sent to a worker so far."""

    @property
    def processes(self) -> int:
        return len(self._workers)

    def worker_pids(self) -> list[int | None]:
        """The pid of each worker process (None where none is running yet)."""
        return [worker.pid for worker in self._workers]

    def start(self) -> None:
        """Start every worker process now, so that the first passes (the catch-up after a
        restart) do not wait for one to start; raises when a worker cannot start."""
        for worker in self._workers:
            _, future = worker.submit(_worker_pid, 0)
            future.result(timeout=self.timeout_seconds)

    def takes(self, backlog_bytes: int) -> bool:
        """Whether a pass with this many new event bytes runs in a worker."""
        return backlog_bytes >= self.min_bytes

    def run(self, key: str, job: loop_controller.LoopPassJob) -> PassOutcome:
        """Run one pass in a worker and wait for its outcome; the pass's own exceptions are
        raised here, a lost worker as ``PassWorkerLostError``."""
        worker = self._pick(key)
        try:
            return self._await(worker, key, job)
        finally:
            with self._guard:
                worker.in_flight -= 1

    def close(self) -> None:
        """Stop taking passes; workers exit once their running pass is done."""
        for worker in self._workers:
            worker.close()

    def _pick(self, key: str) -> _Worker:
        """The Loop's own worker while it is free (its memos are warm), else the least busy."""
        with self._guard:
            home = self._workers[zlib.crc32(key.encode()) % len(self._workers)]
            least = min(self._workers, key=lambda worker: worker.in_flight)
            chosen = home if home.in_flight <= least.in_flight else least
            chosen.in_flight += 1
            self.passes += 1
        return chosen

    def _await(self, worker: _Worker, key: str, job: loop_controller.LoopPassJob) -> PassOutcome:
        executor, future = worker.submit(loop_controller.run_loop_pass_job, job)
        try:
            return future.result(timeout=self.timeout_seconds)
        except TimeoutError:
            worker.discard(executor, kill=True)
            reason = f"pass took longer than {self.timeout_seconds:g} s in its worker process: killed it"
        except BrokenProcessPool as exc:
            worker.discard(executor, kill=False)
            reason = f"the pass's worker process died ({exc})"
        log.warning("Loop %s: %s; the pass is retried in %g s", key, reason, WORKER_LOST_RETRY_SECONDS)
        raise PassWorkerLostError(reason)
