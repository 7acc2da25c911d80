"""Domain events reach their listeners only for changes that were committed."""

import pytest

from appliance import audit, events, orgs
from appliance.db import write_tx


@pytest.fixture
def heard():
    seen = []

    def listener(name, fields):
        seen.append((name, fields.get("action")))

    events.listen(listener)
    yield seen
    events.unlisten(listener)


def test_an_audit_event_is_heard_after_commit_not_before(runtime, heard):
    with write_tx():
        audit.record(audit.CLI, "test.inside")
        assert heard == []  # still inside the transaction
    assert heard == [("audit", "test.inside")]


def test_a_rolled_back_change_is_never_heard(runtime, heard):
    with pytest.raises(RuntimeError):
        with write_tx():
            audit.record(audit.CLI, "test.rolled_back")
            raise RuntimeError("abort")
    orgs.create("beta")  # the next transaction on this thread delivers only its own event
    assert heard == [("audit", "organization.create")]


def test_a_failed_savepoint_drops_only_its_own_events(runtime, heard):
    with write_tx():
        audit.record(audit.CLI, "test.outer")
        with pytest.raises(RuntimeError):
            with write_tx():
                audit.record(audit.CLI, "test.inner")
                raise RuntimeError("abort the savepoint")
    assert heard == [("audit", "test.outer")]


def test_a_failing_listener_does_not_fail_the_change(runtime, heard):
    def broken(name, fields):
        raise ValueError("listener bug")

    events.listen(broken)
    try:
        org = orgs.create("gamma")
    finally:
        events.unlisten(broken)
    assert org.id and heard == [("audit", "organization.create")]
