"""The cloud's event ledger per hub and epoch, on the storage adapter (no MQTT): a new epoch is not
mistaken for the old one, implausible sequence numbers are refused, the committed mark moves over
stored events, dead letters and what the hub dropped, and every hub that needs one gets an ack."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cloud.storage.base import CommandRecord, EventOutcome
from cloud.storage.sql import SqlRegistry
from cloud.storage.sql_schema import dead_letters
from tests.common import T0, device, event, status
from wire.contract import CommandResult, CommandStatus

HUB = "hub-l"
IEEE = "aa:bb:cc:dd:ee:ff:00:22"
OTHER = "00:00:00:00:00:00:00:09"
DEV = "hub-l-aabbccddeeff0022"
S, D, U, X = (EventOutcome.STORED, EventOutcome.DUPLICATE, EventOutcome.UNKNOWN_DEVICE,
              EventOutcome.IMPLAUSIBLE)


@pytest.fixture
def described(registry: SqlRegistry) -> SqlRegistry:
    """The registry with the hub's one device described."""
    with registry.ingest() as tx:
        tx.device_info(device(HUB, IEEE, {"switch": {"on": False}}))
    return registry


def ingest(registry: SqlRegistry, *events) -> list[EventOutcome]:
    with registry.ingest() as tx:
        return [tx.event(e).outcome for e in events]


def acks(registry: SqlRegistry, *messages) -> dict[str, tuple[str | None, int, list[str]]]:
    """Apply status/result messages; the acknowledgements due after the commit, by hub."""
    with registry.ingest() as tx:
        for m in messages:
            if isinstance(m, CommandResult):
                tx.command_result(m)
            else:
                tx.hub_status(m)
        due = tx.acks_due()
    return {a.hub_id: (a.epoch, a.seq, a.results) for a in due}


def on(registry: SqlRegistry) -> bool:
    dev = registry.get_device(DEV)
    assert dev is not None
    return bool(dev.capabilities["switch"]["on"])


def test_a_new_epoch_starts_at_one_and_its_events_are_current(described: SqlRegistry) -> None:
    assert ingest(described, *(event(HUB, s, IEEE, value=s % 2 == 1, epoch="old")
                              for s in (1, 2, 3))) == [S, S, S]
    assert on(described) is True
    # The hub lost its store: its new ledger starts at seq 1 again, under a new epoch.
    acks(described, status(HUB, epoch="new", last_seq=0))
    assert ingest(described, event(HUB, 1, IEEE, value=False, epoch="new"),
                  event(HUB, 2, IEEE, value=False, epoch="new")) == [S, S]
    assert on(described) is False
    # A late event of the old ledger is history, not the current state.
    assert ingest(described, event(HUB, 4, IEEE, value=True, epoch="old")) == [S]
    assert on(described) is False
    hub = described.get_hub(HUB)
    assert hub is not None and hub.epoch == "new" and hub.events_stored == 6
    assert hub.duplicates == 0


def test_an_implausible_sequence_number_is_refused_and_freezes_nothing(
        described: SqlRegistry) -> None:
    assert ingest(described, event(HUB, 1, IEEE, value=False, epoch="e")) == [S]
    assert ingest(described, event(HUB, 2**63 - 1, IEEE, value=True, epoch="e", ts=T0)) == [X]
    assert on(described) is False
    assert ingest(described, event(HUB, 2, IEEE, value=True, epoch="e")) == [S]
    assert on(described) is True  # later events still make the current state
    hub = described.get_hub(HUB)
    assert hub is not None and hub.last_seq == 2 and hub.gaps == 0


def test_the_mark_moves_over_events_dead_letters_and_what_the_hub_dropped(
        described: SqlRegistry) -> None:
    ingest(described, event(HUB, 1, IEEE, epoch="e"), event(HUB, 2, IEEE, epoch="e"),
           event(HUB, 3, OTHER, epoch="e"), event(HUB, 5, IEEE, epoch="e"))
    assert acks(described, status(HUB, epoch="e", last_seq=5))[HUB][:2] == ("e", 3)
    assert ingest(described, event(HUB, 3, OTHER, epoch="e")) == [D]  # kept once
    ingest(described, event(HUB, 4, IEEE, epoch="e"))
    assert acks(described, status(HUB, epoch="e", last_seq=5))[HUB][:2] == ("e", 5)
    # The hub's outbox bound dropped 6..10 before the cloud had them: it stops waiting for them.
    ingest(described, event(HUB, 11, IEEE, epoch="e"))
    assert acks(described, status(HUB, epoch="e", last_seq=11, dropped_upto=10))[HUB][:2] == (
        "e", 11)


def test_results_are_acknowledged_applied_or_kept(described: SqlRegistry) -> None:
    result = CommandResult(id="cmd-unknown", hub_id=HUB, status=CommandStatus.SUCCEEDED)
    due = acks(described, result)
    assert due[HUB][2] == ["cmd-unknown"]  # not known here, kept as a dead letter, let go
    with described.engine.connect() as conn:
        kept = conn.execute(select(dead_letters.c.kind, dead_letters.c.reason)).all()
    assert [tuple(r) for r in kept] == [("result", "unknown_command")]


def test_only_hubs_that_need_it_get_an_acknowledgement(described: SqlRegistry) -> None:
    with described.ingest() as tx:
        tx.device_info(device(HUB, IEEE))
        assert tx.acks_due() == []  # a description moves no ledger
    ingest(described, event(HUB, 1, IEEE, epoch="e"))
    assert acks(described, status(HUB, online=False, epoch="e")) == {}  # its last will
    assert acks(described, status(HUB, epoch="e", last_seq=1)) == {HUB: ("e", 1, [])}


def test_an_event_that_overtook_its_device_description_is_stored_when_it_comes(
        described: SqlRegistry) -> None:
    # A broker may deliver a device's first events before the description the hub sent first.
    assert ingest(described, event(HUB, 1, OTHER, value=True, epoch="e")) == [U]
    with described.ingest() as tx:
        promoted = tx.device_info(device(HUB, OTHER, {"switch": {"on": False}}, ts=T0))
    assert [(p.seq, p.value) for p in promoted] == [(1, True)]
    other = described.get_device("hub-l-0000000000000009")
    assert other is not None and other.capabilities == {"switch": {"on": True}}
    with described.engine.connect() as conn:
        assert conn.execute(select(dead_letters)).all() == []
    assert ingest(described, event(HUB, 1, OTHER, epoch="e")) == [D]  # stored once
    hub = described.get_hub(HUB)
    assert hub is not None and hub.events_stored == 1


def test_batches_of_several_hubs_in_opposite_orders_do_not_deadlock(registry: SqlRegistry) -> None:
    """Two cloud processes may each get a batch with events of the same hubs in opposite orders: the
    ingest names a batch's hubs up front, and the transactions take turns instead of deadlocking."""
    first, second = ("hub-x", "aa:00:00:00:00:00:00:01"), ("hub-y", "aa:00:00:00:00:00:00:02")
    with registry.ingest() as tx:
        for hub_id, ieee in (first, second):
            tx.device_info(device(hub_id, ieee))
    started = threading.Event()
    errors: list[BaseException] = []

    def apply(order: list[tuple[str, str]], seq: int, before_second: Callable[[], object]) -> None:
        try:
            with registry.ingest(hub_id for hub_id, _ in order) as tx:
                tx.event(event(order[0][0], seq, order[0][1]))
                before_second()
                tx.event(event(order[1][0], seq, order[1][1]))
        except BaseException as exc:
            errors.append(exc)

    # The first transaction waits a moment for the second to have begun on its own first hub.
    one = threading.Thread(target=apply, args=([first, second], 1, lambda: started.wait(0.5)))
    two = threading.Thread(target=apply, args=([second, first], 2, started.set))
    one.start()
    two.start()
    one.join(30)
    two.join(30)
    assert errors == []
    for hub_id, _ in (first, second):
        hub = registry.get_hub(hub_id)
        assert hub is not None and (hub.events_stored, hub.duplicates, hub.gaps) == (2, 0, 0)


def test_the_mark_follows_events_out_of_order_within_and_across_batches(
        described: SqlRegistry) -> None:
    ingest(described, event(HUB, 3, IEEE, epoch="o"), event(HUB, 1, IEEE, epoch="o"),
           event(HUB, 2, IEEE, epoch="o"), event(HUB, 6, IEEE, epoch="o"))
    assert acks(described, status(HUB, epoch="o", last_seq=6))[HUB][:2] == ("o", 3)
    ingest(described, event(HUB, 5, IEEE, epoch="o"))  # still a hole at 4
    assert acks(described, status(HUB, epoch="o", last_seq=6))[HUB][:2] == ("o", 3)
    ingest(described, event(HUB, 4, IEEE, epoch="o"), event(HUB, 7, IEEE, epoch="o"))
    assert acks(described, status(HUB, epoch="o", last_seq=7))[HUB][:2] == ("o", 7)
    ingest(described, event(HUB, 9, IEEE, epoch="o"), event(HUB, 8, IEEE, epoch="o"))
    assert acks(described, status(HUB, epoch="o", last_seq=9))[HUB][:2] == ("o", 9)


def _pending(command_id: str) -> CommandRecord:
    now = datetime.now(UTC)
    return CommandRecord(id=command_id, hub_id=HUB, device_id=DEV, ieee=IEEE, capability="switch",
                         command="on", args={}, status="pending", created_at=now,
                         expires_at=now + timedelta(seconds=30))


def test_results_alone_are_applied_and_acknowledged_as_the_general_transaction_does(
        described: SqlRegistry) -> None:
    assert ingest(described, *(event(HUB, s, IEEE, value=False, epoch="e1")
                               for s in (1, 2, 4))) == [S, S, S]
    for command_id in ("c1", "c2"):
        described.add_command(_pending(command_id))
    general = acks(described, CommandResult(id="c1", hub_id=HUB, status="succeeded"))
    assert general == {HUB: ("e1", 2, ["c1"])}  # the mark stops before the missing seq 3

    done = described.ingest_results([
        CommandResult(id="c2", hub_id=HUB, status="succeeded", state={"switch": {"on": True}}),
        CommandResult(id="c1", hub_id=HUB, status="failed")])  # c1 was answered: unchanged
    assert done is not None
    records, due = done
    assert [(r.id, r.status) for r in records] == [("c2", "succeeded"), ("c1", "succeeded")]
    assert [(a.hub_id, a.epoch, a.seq, a.results) for a in due] == [(HUB, "e1", 2, ["c2", "c1"])]
    assert on(described)  # the state read back is the device's
    stored = described.get_command("c2")
    assert stored is not None and stored.state == {"switch": {"on": True}}

    # An unknown command (kept as a dead letter) or another hub's: the general transaction's,
    # and nothing of the batch is kept here.
    hub = described.get_hub(HUB)
    for result in (CommandResult(id="nope", hub_id=HUB, status="failed"),
                   CommandResult(id="c2", hub_id="hub-other", status="failed")):
        assert described.ingest_results([result]) is None
    assert described.get_hub(HUB) == hub
    with described.engine.connect() as conn:
        assert conn.execute(select(dead_letters)).all() == []


def test_results_alone_of_a_hub_without_epochs_are_acknowledged_without_one(
        described: SqlRegistry) -> None:
    assert ingest(described, event(HUB, 1, IEEE, value=True)) == [S]  # a hub older than epochs
    described.add_command(_pending("c1"))
    done = described.ingest_results([CommandResult(id="c1", hub_id=HUB, status="succeeded")])
    assert done is not None
    assert [(a.epoch, a.seq, a.results) for a in done[1]] == [(None, 1, ["c1"])]
