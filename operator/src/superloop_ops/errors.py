"""The operator's small error tree.

Only ``handlers`` maps these to kopf's errors: ``PermanentFailure`` is never retried (bad spec,
bad artifact contract), ``TemporaryFailure`` is retried after ``delay`` seconds (a dependency
that is not ready yet: a missing Secret, an unreachable service).
"""

from __future__ import annotations

__all__ = [
    "ArtifactInvalidError",
    "ArtifactOutsideRepoError",
    "ContractError",
    "DependencyNotReadyError",
    "InvalidSpecError",
    "JournalWriteError",
    "OperatorError",
    "SecretNotUsableError",
]


class OperatorError(Exception):
    """Base of every error the product raises on purpose."""


class InvalidSpecError(OperatorError):
    """Permanent: the input is wrong and retrying cannot help."""


class ContractError(InvalidSpecError):
    """Permanent: an artifact or argument breaks the behavioural contract (CLI prints ``error: <msg>``)."""


class ArtifactInvalidError(ContractError):
    """Permanent: a runtime artifact is present and readable but its content breaks the contract."""


class ArtifactOutsideRepoError(ArtifactInvalidError):
    """Permanent: a runtime artifact path resolves (through a symbolic link) outside its repository."""

    reason_code = "artifact_outside_repo"


class DependencyNotReadyError(OperatorError):
    """Temporary: something we depend on is missing or unreachable; retry after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 30.0) -> None:
        super().__init__(message)
        self.delay = delay


class JournalWriteError(DependencyNotReadyError):
    """Temporary: a journal file could not be written (disk full, read-only, a directory in the way).

    Every write is atomic (temp file and rename) or a whole-line append that is rolled back on
    failure, so nothing half-written is left; the pass is retried once space returns.
    """

    def __init__(self, message: str, delay: float = 30.0) -> None:
        super().__init__(message, delay)


class SecretNotUsableError(DependencyNotReadyError):
    """Temporary: a referenced Secret has not opted in to the operator (its owner may label it)."""

    reason_code = "secret_not_opted_in"
