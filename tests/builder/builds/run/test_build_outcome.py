"""``build_outcome.decide``: what an attempt left maps to one ending (the writes are tested end to end)."""

from __future__ import annotations

import pytest

from builder.builds.run.outcome import MAX_ATTEMPTS, Decision, Ending, decide
from builder.builds.run.stops import BuildCancelled, Stop, StopKind
from builder.errors import PermanentError, TransientError


@pytest.mark.parametrize("stop, expected", [
    (None, Decision(Ending.CANCELLED, "cancelled")),
    (Stop(StopKind.CANCELLED, "cancelled by alice"), Decision(Ending.CANCELLED, "cancelled by alice")),
    (Stop(StopKind.LOST, "reaped"), Decision(Ending.LOST, "reaped")),
    (Stop(StopKind.LOG_LIMIT, "log too long"), Decision(Ending.FAILED, "log too long")),
])
def test_once_stopped_the_stop_decides(stop, expected):
    assert decide(TransientError("stream broke"), True, stop, None, None, 1) == expected


def test_errors_fail_retry_or_crash():
    assert decide(PermanentError("bad Dockerfile"), False, None, None, None, 1) == Decision(Ending.FAILED,
                                                                                            "bad Dockerfile")
    assert decide(TransientError("engine away"), False, None, None, None, 1) == Decision(
        Ending.RETRY, "Transient failure, will retry: engine away")
    assert decide(TransientError("engine away"), False, None, None, None, MAX_ATTEMPTS) == Decision(
        Ending.FAILED, f"engine away (gave up after {MAX_ATTEMPTS} attempts)")
    bug = KeyError("x")
    assert decide(bug, False, None, None, None, 1) == Decision(Ending.CRASHED, "internal error: KeyError: 'x'", bug)


def test_without_an_error_supersession_then_skip_then_success():
    assert decide(None, False, None, "docs only", "superseded by #9", 1) == Decision(Ending.SUPERSEDED,
                                                                                    "superseded by #9")
    assert decide(None, False, None, "docs only", None, 1) == Decision(Ending.SKIPPED, "docs only")
    assert decide(None, False, None, None, None, 1) == Decision(Ending.SUCCEEDED)
    assert decide(BuildCancelled("cancelled"), True, None, None, None, 1).ending is Ending.CANCELLED
