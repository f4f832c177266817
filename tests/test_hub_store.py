"""The hub's durable store: the outbox keeps order and sequence across restarts, is bounded by size
and age with every drop counted, and the command journal makes commands run at most once."""

from __future__ import annotations

import time
from pathlib import Path

from hub.store import HubStore


def _payload(seq: int) -> bytes:
    return f'{{"seq": {seq}}}'.encode()


def test_outbox_survives_a_restart_in_order_with_its_sequence(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.db")
    for _ in range(5):
        store.add_event("t/events", _payload)
    rows = store.pending_rows(0, 10)
    store.remove(rows[0].id)  # the broker acknowledged the first one
    store.close()

    again = HubStore(tmp_path / "hub.db")
    assert again.last_seq == 5
    assert again.pending == 4
    assert [r.payload for r in again.pending_rows(0, 10)] == [_payload(s) for s in (2, 3, 4, 5)]
    assert again.add_event("t/events", _payload) == 6  # the sequence only grows
    # Everything acknowledged: the outbox empties, the sequence does not reset.
    for row in again.pending_rows(0, 10):
        again.remove(row.id)
    again.close()
    third = HubStore(tmp_path / "hub.db")
    assert third.pending == 0
    assert third.add_event("t/events", _payload) == 7


def test_full_outbox_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.db", max_rows=100)
    for _ in range(130):
        store.add_event("t/events", _payload)
    assert store.pending == 100
    assert store.dropped == 30
    rows = store.pending_rows(0, 1000)
    assert rows[0].payload == _payload(31)  # the oldest went first
    assert rows[-1].payload == _payload(130)
    store.close()
    assert HubStore(tmp_path / "hub.db", max_rows=100).dropped == 30  # the count persists


def test_stale_rows_are_dropped_and_counted(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.db", max_age=0.2)
    store.add_event("t/events", _payload)
    store.add_event("t/events", _payload)
    time.sleep(0.3)
    store.add_event("t/events", _payload)
    assert store.trim() == 2
    assert store.dropped == 2
    assert [r.payload for r in store.pending_rows(0, 10)] == [_payload(3)]


def test_command_journal_answers_a_redelivery_instead_of_running_again(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.db")
    assert store.begin_command("c1") == (True, None)
    assert store.begin_command("c1") == (False, None)  # journaled, no answer yet (running/crashed)
    store.finish_command("c1", b"result")
    store.close()
    again = HubStore(tmp_path / "hub.db")
    assert again.begin_command("c1") == (False, b"result")
    assert again.begin_command("c2") == (True, None)
