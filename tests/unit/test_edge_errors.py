"""The API server's answers mapped into the product's error tree."""

from __future__ import annotations

from superloop_ops.errors import DependencyNotReadyError, InvalidSpecError
from superloop_ops.k8s.edge import ConflictError, ObjectNotFoundError, map_api_exception


class Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status, self.reason = status, "x"


def test_a_409_is_a_conflict_to_read_again() -> None:
    mapped = map_api_exception(Refused(409), "Loop a/b status")
    assert isinstance(mapped, ConflictError)
    assert isinstance(mapped, DependencyNotReadyError)


def test_other_answers_keep_their_meaning() -> None:
    assert isinstance(map_api_exception(Refused(404), "Loop a/b"), ObjectNotFoundError)
    assert isinstance(map_api_exception(Refused(422), "Loop a/b"), InvalidSpecError)
    assert not isinstance(map_api_exception(Refused(503), "Loop a/b"), ConflictError)
