"""Group commands: setting the level of N bulbs with one group command (one multicast, then the
hub reads each member back) beside N device commands sent together, in alternate rounds of the
same run.

It starts Mosquitto (with Spoke's configuration; amqtt with ``--broker amqtt``), a `spoke cloud
run` and a `spoke hub run --radio sim` with N simulated bulbs, each its own process (bench.rig),
puts every bulb in one Zigbee group through the REST API, then alternates rounds of:

- group: ``POST /api/v1/hubs/{id}/groups/{g}/commands`` ``set_level``;
- devices: N ``POST /api/v1/devices/{id}/commands`` ``set_level``, all sent at once.

Each sample is the time from the first request until every bulb shows the new level in the cloud
(``GET /api/v1/devices``, polled): what a person waits for before the room looks right. The
table gives p50 and p95 of each, their ratio, and the radio frames each way needs (a group command
is one frame on the air for any N, then N reads; device commands are N frames, each answered).

    .venv/bin/python -m bench.group_commands [--bulbs 8] [--n 20] [--rounds 4] [--broker amqtt]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.rig import MOSQUITTO, Rig

POLL = 0.01  # seconds between two reads of the devices' state


@dataclass
class Result:
    bulbs: int
    broker: str
    group: list[float] = field(default_factory=list)  # ms, until every bulb shows the level
    devices: list[float] = field(default_factory=list)

    def ratio(self, q: float) -> float:
        return pct(self.devices, q) / pct(self.group, q)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Levels:
    """The two ways of setting every bulb's level, each timed until the cloud shows it."""

    def __init__(self, rig: Rig, hub_id: str, bulbs: list[str], group_id: int) -> None:
        self.http = httpx.AsyncClient(base_url=rig.api(), timeout=30,
                                      headers={"Authorization": f"Bearer {rig.token}"})
        self.hub_id, self.bulbs, self.group_id = hub_id, bulbs, group_id
        self.sent = 0

    def _next_level(self) -> int:
        # Alternate between values far apart, so that each command changes every bulb.
        self.sent += 1
        return 20 + (self.sent % 2) * 50 + (self.sent // 2) % 10

    async def _shown(self, level: int, started: float) -> float:
        wanted = set(self.bulbs)
        while True:
            found = (await self.http.get("/api/v1/devices",
                                         params={"hub_id": self.hub_id})).json()
            done = {d["id"] for d in found if d["id"] in wanted
                    and abs((d["capabilities"].get("level") or {}).get("level", -99) - level) < 1}
            if done == wanted:
                return (time.perf_counter() - started) * 1000
            await asyncio.sleep(POLL)

    async def group(self) -> float:
        level = self._next_level()
        started = time.perf_counter()
        r = await self.http.post(f"/api/v1/hubs/{self.hub_id}/groups/{self.group_id}/commands",
                                 json={"command": "set_level", "args": {"level": level}})
        if r.status_code != 200:
            raise RuntimeError(f"group command answered {r.status_code}: {r.text}")
        return await self._shown(level, started)

    async def devices(self) -> float:
        level = self._next_level()
        started = time.perf_counter()
        answers = await asyncio.gather(*(
            self.http.post(f"/api/v1/devices/{bulb}/commands",
                           json={"capability": "level", "command": "set_level",
                                 "args": {"level": level}}) for bulb in self.bulbs))
        failed = [r for r in answers if r.status_code != 200]
        if failed:
            raise RuntimeError(f"device command answered {failed[0].status_code}: "
                               f"{failed[0].text}")
        return await self._shown(level, started)

    async def close(self) -> None:
        await self.http.aclose()


async def _measure(rig: Rig, result: Result, n: int, rounds: int, gap: float) -> None:
    bulbs = [d["id"] for d in rig.wait_hub_ready(result.bulbs)]
    hub_id = rig.hub_id
    async with httpx.AsyncClient(base_url=rig.api(), timeout=30,
                                 headers={"Authorization": f"Bearer {rig.token}"}) as api:
        made = await api.post(f"/api/v1/hubs/{hub_id}/groups", json={"name": "bench"})
        if made.status_code != 201:
            raise RuntimeError(f"group not created: {made.status_code} {made.text}")
        group_id = made.json()["group_id"]
        for bulb in bulbs:
            added = await api.post(f"/api/v1/hubs/{hub_id}/groups/{group_id}/members",
                                   json={"device_id": bulb})
            if added.status_code != 200:
                raise RuntimeError(f"{bulb} not added: {added.status_code} {added.text}")
    levels = Levels(rig, hub_id, bulbs, group_id)
    try:
        await levels.group()  # warm-up, not counted
        await levels.devices()
        per_round = [n // rounds + (1 if i < n % rounds else 0) for i in range(rounds)]
        for count in per_round:
            for _ in range(count):
                result.group.append(await levels.group())
                await asyncio.sleep(gap)
            for _ in range(count):
                result.devices.append(await levels.devices())
                await asyncio.sleep(gap)
    finally:
        await levels.close()


def measure(bulbs: int, n: int, rounds: int, gap: float, broker: str) -> Result:
    result = Result(bulbs=bulbs, broker=broker)
    with tempfile.TemporaryDirectory(prefix="spoke-groups-") as tmp:
        rig = Rig(Path(tmp), loadgens=0, devices=("bulb",) * bulbs, broker_kind=broker,
                  tick=5.0, hub_id="bench-groups", command_timeout=10)
        try:
            rig.start()
            asyncio.run(_measure(rig, result, n, rounds, gap))
        finally:
            rig.stop()
    return result


def table(result: Result, command: str, n: int, rounds: int) -> str:
    b = result.bulbs
    return "\n".join([
        f"group commands: {b} bulbs set to a new level, {n} times each way in {rounds} alternate "
        f"rounds, through {result.broker}; ms until every bulb shows it in the cloud",
        f"  {command}",
        f"{'':<34} {'p50':>8} {'p95':>8}  frames to the bulbs",
        f"{'one group command':<34} {pct(result.group, 0.5):8.1f} {pct(result.group, 0.95):8.1f}"
        f"  1 multicast + {b} reads",
        f"{f'{b} device commands at once':<34} {pct(result.devices, 0.5):8.1f} "
        f"{pct(result.devices, 0.95):8.1f}  {b} commands + {b} reads",
        f"{'device commands / group command':<34} {result.ratio(0.5):7.2f}x "
        f"{result.ratio(0.95):7.2f}x",
    ])


def cli(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bulbs", type=int, default=8)
    parser.add_argument("--n", type=int, default=20, help="samples of each kind")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between two samples")
    parser.add_argument("--broker", default="mosquitto" if shutil.which(MOSQUITTO) else "amqtt",
                        choices=("mosquitto", "amqtt"))
    args = parser.parse_args(argv)
    if args.n < args.rounds or args.bulbs < 1:
        parser.error("--n must be at least --rounds, and --bulbs at least 1")
    result = measure(args.bulbs, args.n, args.rounds, args.gap, args.broker)
    command = " ".join(["python -m bench.group_commands",
                        *(argv if argv is not None else sys.argv[1:])])
    print(table(result, command, args.n, args.rounds))
    return result


if __name__ == "__main__":
    cli()
