"""A batch of command results alone (the usual batch on a command's way back): applied with a few
statements built once, instead of the general ingest transaction (which reads and writes back the
hub's and the device's whole rows and the ledger, none of which a result changes).

A result touches its hub's ``last_seen``, closes its command (once: a result for a command already
closed changes nothing), merges the state it read back into its device, and is acknowledged with the
hub's committed ledger mark as stored (every transaction that stores an event or a dead letter moves
and writes that mark, so the stored one is current). Anything else (a hub or ledger never seen, a
result for an unknown command, kept as a dead letter) goes through the general transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update

from cloud.storage.base import AckDue, CommandRecord
from cloud.storage.sql_ingest import command_record
from cloud.storage.sql_schema import commands, devices, hubs, ledgers
from wire.contract import CommandResult, CommandStatus

_TOUCH_HUB = (update(hubs).where(hubs.c.id == bindparam("p_hub"))
              .values(last_seen=bindparam("p_now")).returning(hubs.c.epoch))
_CLOSE_COMMAND = (
    update(commands)
    .where(commands.c.id == bindparam("p_id"), commands.c.hub_id == bindparam("p_hub"),
           or_(commands.c.status == CommandStatus.PENDING.value,
               commands.c.status == CommandStatus.TIMEOUT.value))
    .values(status=bindparam("p_status"), state=bindparam("p_state"),
            error=bindparam("p_error"), error_code=bindparam("p_error_code"),
            completed_at=bindparam("p_completed_at"), duration_ms=bindparam("p_duration_ms"))
    .returning(*commands.c)
)
_COMMAND = select(commands).where(commands.c.id == bindparam("p_id"))
_DEVICE_STATE = (select(devices.c.capabilities, devices.c.state_at)
                 .where(devices.c.id == bindparam("p_id")).with_for_update())
_SET_DEVICE_STATE = (update(devices).where(devices.c.id == bindparam("p_id"))
                     .values(capabilities=bindparam("p_caps"), state_at=bindparam("p_state_at")))
_MARK = select(ledgers.c.mark).where(ledgers.c.hub_id == bindparam("p_hub"),
                                     ledgers.c.epoch == bindparam("p_epoch"))


class NotPlain(Exception):
    """The batch needs the general transaction (raised inside it, so nothing is kept)."""


def apply_results(conn: Connection, results: Sequence[CommandResult]
                  ) -> tuple[list[CommandRecord], list[AckDue]]:
    """Apply the results in order on ``conn`` (in its transaction); the commands' records and the
    acknowledgement due to each hub. Raises NotPlain for a batch this does not cover."""
    now = datetime.now(UTC)
    epochs: dict[str, str | None] = {}
    for hub_id in sorted({r.hub_id for r in results}):  # the general path's lock order
        row = conn.execute(_TOUCH_HUB, {"p_hub": hub_id, "p_now": now}).first()
        if row is None:
            raise NotPlain(f"hub {hub_id} has no row yet")
        epochs[hub_id] = row.epoch
    records = [_close(conn, result) for result in results]
    acks = []
    for hub_id, epoch in epochs.items():
        mark: int | None = 0
        if epoch is not None:
            mark = conn.execute(_MARK, {"p_hub": hub_id, "p_epoch": epoch}).scalar()
            if mark is None:
                raise NotPlain(f"hub {hub_id} has no ledger for its epoch yet")
        assert mark is not None
        acks.append(AckDue(hub_id=hub_id, epoch=epoch or None, seq=mark,  # the legacy "": None
                           results=[r.id for r in results if r.hub_id == hub_id]))
    return records, acks


def _close(conn: Connection, result: CommandResult) -> CommandRecord:
    row = conn.execute(_CLOSE_COMMAND, {
        "p_id": result.id, "p_hub": result.hub_id, "p_status": result.status.value,
        "p_state": result.state, "p_error": result.error, "p_error_code": result.error_code,
        "p_completed_at": result.ts, "p_duration_ms": result.duration_ms}).first()
    if row is None:  # closed before (a result delivered again), or not this hub's command
        row = conn.execute(_COMMAND, {"p_id": result.id}).first()
        if row is None or row.hub_id != result.hub_id:
            raise NotPlain(f"cmd={result.id} is not known")
        return command_record(row)
    if result.state:
        _merge_state(conn, row.device_id, result)
    return command_record(row)


def _merge_state(conn: Connection, device_id: str, result: CommandResult) -> None:
    device = conn.execute(_DEVICE_STATE, {"p_id": device_id}).first()
    if device is None:
        return
    capabilities: dict[str, Any] = dict(device.capabilities or {})
    for cap, attrs in (result.state or {}).items():
        capabilities[cap] = {**capabilities.get(cap, {}), **attrs}
    state_at = device.state_at
    conn.execute(_SET_DEVICE_STATE, {
        "p_id": device_id, "p_caps": capabilities,
        "p_state_at": result.ts if state_at is None or result.ts > state_at else state_at})
