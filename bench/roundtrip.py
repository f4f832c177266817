"""Setpoint round trip: REST POST -> cloud -> MQTT -> hub -> zigpy -> simulated thermostat (write +
read back) -> hub -> MQTT -> cloud -> HTTP 200, measured over real HTTP on loopback.

For each broker (mosquitto when installed, and the embedded amqtt) it prints the round-trip
percentiles next to the hub's own share (the Zigbee exchange and read back, from the result's
duration_ms), so the cost of the cloud/MQTT path is visible in the same run.

    .venv/bin/python -m bench.roundtrip [--n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from pydantic import SecretStr

from bench.rig import render_mosquitto_conf
from bench.tls import make_pki
from cloud.auth import create_token
from cloud.broker import start_broker, stop_broker
from cloud.broker_accounts import write_dynsec_config
from cloud.broker_credentials import ensure_broker_secret
from cloud.hub_registration import HubCredentials, register_hub
from cloud.service import CloudServices, run_cloud
from cloud.settings import CloudSettings
from cloud.storage import open_registry
from hub.app import Hub
from hub.settings import HubSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def broker(kind: str, workdir: Path) -> AsyncIterator[int]:
    """The broker, holding the cloud's account for ``workdir / "broker-secret"``."""
    port = free_port()
    dynsec = workdir / "broker-dynsec.json"
    write_dynsec_config(dynsec, ensure_broker_secret(workdir / "broker-secret"), [])
    if kind == "amqtt":
        b = await start_broker("127.0.0.1", port, dynsec_file=dynsec)
        try:
            yield port
        finally:
            await stop_broker(b)
        return
    conf = workdir / "mosquitto.conf"
    conf.write_text(render_mosquitto_conf(  # Spoke's shipped one
        port, workdir / "mosquitto-data", dynsec_file=dynsec, tls_port=free_port(),
        pki=make_pki(workdir / "pki")))
    proc = subprocess.Popen([shutil.which("mosquitto") or "mosquitto", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            await asyncio.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


GAP = 0.1  # seconds between commands


def register(settings: CloudSettings, hub_id: str) -> HubCredentials:
    """The hub's login, registered as `spoke cloud hub register` does."""
    with open_registry(settings) as registry:
        return register_hub(settings, registry, hub_id)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(kind: str, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        async with broker(kind, workdir) as mqtt_port:
            api_port = free_port()
            cloud_settings = CloudSettings(
                database_url=f"sqlite:///{workdir / 'cloud.db'}", mqtt_port=mqtt_port,
                cloud_port=api_port, command_timeout=10,
                broker_secret_file=workdir / "broker-secret",
                metrics_token_file=workdir / "metrics-token")
            hub_id = f"bench-{kind}"
            credentials = await asyncio.to_thread(register, cloud_settings, hub_id)
            services = await asyncio.to_thread(CloudServices.build, cloud_settings)
            _, token = await asyncio.to_thread(create_token, services.storage.registry, "bench")
            started = asyncio.Event()
            cloud = asyncio.create_task(run_cloud(cloud_settings, services=services,
                                                  started=started))
            await started.wait()
            hub = Hub(HubSettings(hub_id=hub_id, hub_data_dir=workdir / "hub",
                                  mqtt_port=mqtt_port, sim_devices=["thermostat"],
                                  mqtt_username=credentials.username,
                                  mqtt_password=SecretStr(credentials.password)))
            await hub.start()
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}",
                                             headers={"Authorization": f"Bearer {token}"},
                                             timeout=30) as api:
                    device_id = ""
                    for _ in range(200):
                        devices = (await api.get("/api/v1/devices")).json()
                        if devices:
                            device_id = devices[0]["id"]
                            break
                        await asyncio.sleep(0.05)
                    rtts, hub_ms = [], []
                    for i in range(n + 5):
                        value = 18.0 + (i % 20) * 0.5
                        t0 = time.perf_counter()
                        r = await api.post(f"/api/v1/devices/{device_id}/commands", json={
                            "capability": "thermostat", "command": "set_heating_setpoint",
                            "args": {"value": value}})
                        elapsed = (time.perf_counter() - t0) * 1000
                        body = r.json()
                        assert r.status_code == 200, body
                        assert body["state"]["thermostat"]["heating_setpoint"] == value
                        if i >= 5:  # warm-up
                            rtts.append(elapsed)
                            hub_ms.append(body["duration_ms"])
                        # zigpy drops a frame identical to one it saw within 10 s; a device's
                        # "write succeeded" answer repeats once the 256 ZCL sequence numbers wrap,
                        # so keep below ~128 commands per 10 s, as any real use does.
                        await asyncio.sleep(GAP)
            finally:
                await hub.stop()
                cloud.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cloud
    return {"n": n, "p50": pct(rtts, 0.5), "p95": pct(rtts, 0.95), "p99": pct(rtts, 0.99),
            "mean": statistics.fmean(rtts), "hub_p50": pct(hub_ms, 0.5)}


async def main(n: int) -> None:
    kinds = (["mosquitto"] if shutil.which("mosquitto") else []) + ["amqtt"]
    print(f"setpoint round trip over real HTTP, {n} sequential commands per broker (ms)")
    print(f"{'broker':<10} {'p50':>7} {'p95':>7} {'p99':>7} {'mean':>7}   {'hub share p50':>13}")
    for kind in kinds:
        r = await measure(kind, n)
        print(f"{kind:<10} {r['p50']:7.1f} {r['p95']:7.1f} {r['p99']:7.1f} {r['mean']:7.1f}   "
              f"{r['hub_p50']:13.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args().n))
