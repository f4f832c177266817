"""``Idempotency-Key``: a client that retries an action (after a 504, a dropped connection, twice at
once) gets the first request's outcome, and the simulated device carries it out once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cloud.auth import create_account, create_token
from tests.common import eventually
from tests.conftest import BrokerAddress
from tests.stack import Stack, running_stack


def _executions(stack: Stack, ieee: str) -> int:
    """Cluster commands the simulated device carried out (its own log)."""
    path = stack.sim.executions_path
    if path is None or not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.startswith(ieee))


async def _level(stack: Stack, device: dict[str, Any], level: float, key: str | None,
                 headers: dict[str, str] | None = None) -> Any:
    return await stack.api.post(
        f"/api/v1/devices/{device['id']}/commands",
        json={"capability": "level", "command": "set_level", "args": {"level": level}},
        headers={**({"Idempotency-Key": key} if key else {}), **(headers or {})})


async def test_a_retried_command_runs_once(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": ["bulb"]}) as stack:
        (bulb,) = await stack.wait_for_devices(1)
        before = _executions(stack, bulb["ieee"])
        first = await _level(stack, bulb, 40, "retry-1")
        second = await _level(stack, bulb, 40, "retry-1")
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        assert first.json()["id"] == second.json()["id"]
        assert abs(second.json()["state"]["level"]["level"] - 40) < 0.5  # as the device read it
        # Twice at once, under a new key: one command, one execution.
        both = await asyncio.gather(*(_level(stack, bulb, 70, "retry-2") for _ in range(2)))
        assert {r.status_code for r in both} == {200}, [r.text for r in both]
        assert both[0].json()["id"] == both[1].json()["id"]
        await asyncio.sleep(0.5)  # anything sent twice would have run by now
        assert _executions(stack, bulb["ieee"]) - before == 2
        # Without a key, each request is a new command.
        plain = [await _level(stack, bulb, 10, None) for _ in range(2)]
        assert plain[0].json()["id"] != plain[1].json()["id"]
        await eventually(lambda: _executions(stack, bulb["ieee"]) - before == 4,
                         what="two more executions")


async def test_a_key_is_tied_to_its_request_and_its_account(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": ["bulb"]}) as stack:
        (bulb,) = await stack.wait_for_devices(1)
        assert (await _level(stack, bulb, 30, "k")).status_code == 200
        reused = await _level(stack, bulb, 31, "k")
        assert reused.status_code == 422 and "different request" in reused.text
        registry = stack.services.storage.registry
        await asyncio.to_thread(create_account, registry, "neighbour")
        _, other = await asyncio.to_thread(create_token, registry, "n", account="neighbour",
                                           scopes=["control"])
        response = await _level(stack, bulb, 30, "k", {"Authorization": f"Bearer {other}"})
        assert response.status_code == 404  # the key does not reach across accounts
        for bad in ("x" * 256, "with space"):
            response = await _level(stack, bulb, 30, bad)
            assert response.status_code == 422, (bad, response.text)


async def test_a_retry_after_504_gets_the_outcome_without_a_second_run(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": ["bulb"]},
                             cloud={"command_timeout": 0.001}) as stack:
        (bulb,) = await stack.wait_for_devices(1)
        before = _executions(stack, bulb["ieee"])
        first = await _level(stack, bulb, 55, "after-504")
        assert first.status_code == 504, first.text
        command_id = first.json()["id"]
        await eventually(lambda: _executions(stack, bulb["ieee"]) - before == 1,
                         what="the command ran on the device")

        async def done() -> bool:
            retry = await _level(stack, bulb, 55, "after-504")
            return retry.status_code == 200 and retry.json()["id"] == command_id

        await eventually(done, what="the retry answers with the first command's result")
        await asyncio.sleep(0.3)
        assert _executions(stack, bulb["ieee"]) - before == 1


async def test_retried_pairing_rename_and_remove_answer_as_the_first_time(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": ["bulb"]}) as stack:
        (bulb,) = await stack.wait_for_devices(1)
        hub = stack.hub_settings.hub_id
        opened = [await stack.api.post(f"/api/v1/hubs/{hub}/pairing", json={"duration": 30},
                                       headers={"Idempotency-Key": "pair-1"}) for _ in range(2)]
        assert [r.status_code for r in opened] == [202, 202]
        assert opened[0].json()["request_id"] == opened[1].json()["request_id"]
        renamed = [await stack.api.patch(f"/api/v1/devices/{bulb['id']}", json={"name": "Hall"},
                                         headers={"Idempotency-Key": "name-1"}) for _ in range(2)]
        assert [r.status_code for r in renamed] == [200, 200]
        assert renamed[0].json() == renamed[1].json() and renamed[1].json()["name"] == "Hall"
        removed = [await stack.api.delete(f"/api/v1/devices/{bulb['id']}",
                                          headers={"Idempotency-Key": "rm-1"}) for _ in range(2)]
        # The retry is answered from the first answer, though the device is gone by now.
        assert [r.status_code for r in removed] == [204, 204], [r.text for r in removed]
