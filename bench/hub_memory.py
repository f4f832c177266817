"""Resident memory of a `spoke hub run --radio sim` process with simulated devices paired and
reporting, beside two floors measured in the same run: a bare Python process that imports zigpy,
and one that also loads every zha-quirk (``zhaquirks.setup()``), which a zigpy hub that loads its
quirks the usual way pays before it has a device. The hub loads the quirks by their index
(device_handlers.quirks): the modules of the models it has; the load generators have no quirk.

For each size a real Mosquitto and bench.ledger_acker (the acknowledging cloud) run, the hub pairs
that many load generators (each reports every ``--tick`` seconds), and its RSS is sampled from
/proc while the devices report: steady is the median of the samples of the last half of the
window, peak is the kernel's high-water mark (VmHWM) over the process's life, pairing included.

    .venv/bin/python -m bench.hub_memory [--devices 50,200,500] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.hub_events import HUB_ID, Broker, acker, mosquitto
from bench.rig import REPO, SPOKE
from hub.control import ControlError, request

FLOOR = "import zigpy.application, zhaquirks; zhaquirks.setup()"
ZIGPY = "import zigpy.application"


def memory(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss, hwm = (int(re.search(rf"{key}:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
                for key in ("VmRSS", "VmHWM"))
    return rss / 1024, hwm / 1024


def floor(setup: str = FLOOR) -> tuple[float, float]:
    """RSS and peak of a bare process that runs ``setup`` (by default: imports zigpy and loads
    every zha-quirk)."""
    # Nothing else imported: the figure must not include this benchmark's own modules.
    code = (f"{setup}\nimport re\nstatus = open('/proc/self/status').read()\n"
            "print(*(int(re.search(k + r':\\s+(\\d+)', status).group(1)) / 1024 "
            "for k in ('VmRSS', 'VmHWM')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=REPO)
    rss, hwm = out.stdout.split()
    return float(rss), float(hwm)


def control(sock_path: Path, op: str, *, attempts: int = 1) -> dict[str, object]:
    """One operation on the hub's local control channel (tried again on a busy machine)."""
    for attempt in range(attempts - 1):
        try:
            return control(sock_path, op)
        except (OSError, ControlError):
            time.sleep(0.5 * (attempt + 1))
    return asyncio.run(request(sock_path, {"op": op}))


@dataclass
class Sample:
    devices: int
    steady: float  # MiB
    peak: float  # MiB
    pair_seconds: float  # until every device was paired and reported through to the cloud
    events: int  # acknowledged by the cloud while measured


def measure_hub(workdir: Path, broker: Broker, devices: int, seconds: float, tick: float,
                speed: float, within: float) -> Sample:
    data_dir = workdir / f"hub-{devices}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
    env.update(SPOKE_HUB_ID=HUB_ID, SPOKE_HUB_DATA_DIR=str(data_dir), SPOKE_RADIO="sim",
               SPOKE_SIM_DEVICES=",".join(["loadgen"] * devices), SPOKE_SIM_TICK=str(tick),
               SPOKE_SIM_SPEED=str(speed),
               SPOKE_STATE_REFRESH_ON_START="false", SPOKE_MQTT_HOST="127.0.0.1",
               SPOKE_MQTT_PORT=str(broker.port), SPOKE_MQTT_USERNAME=broker.username,
               SPOKE_MQTT_PASSWORD=broker.password, SPOKE_CONFIG=str(workdir / "none.toml"),
               SPOKE_SHUTDOWN_DRAIN="1")
    log = (workdir / f"hub-{devices}.log").open("wb")
    proc = subprocess.Popen([SPOKE, "hub", "run", "--radio", "sim"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = time.monotonic()
        status: dict[str, object] = {}
        while int(status.get("devices", 0)) < devices:  # type: ignore[call-overload]
            if proc.poll() is not None or time.monotonic() - started > within:
                raise RuntimeError(f"hub did not adopt {devices} devices; see {log.name}")
            time.sleep(0.5)
            try:
                status = control(data_dir / "control.sock", "status")["status"]  # type: ignore[assignment]
            except (OSError, ControlError, ValueError, KeyError):
                continue
        # Tracked is not yet configured: wait until the devices report through to the cloud
        # (as many acknowledged events as devices), so the window sees a hub in steady use.
        first = int(status["metrics"]["acked_seq"])  # type: ignore[index]
        acked_before = first
        while acked_before - first < devices:
            if proc.poll() is not None or time.monotonic() - started > within:
                raise RuntimeError(f"{devices} devices do not report; see {log.name}")
            time.sleep(0.5)
            with contextlib.suppress(OSError, ValueError, KeyError):
                status = control(data_dir / "control.sock", "status")["status"]  # type: ignore[assignment]
                acked_before = int(status["metrics"]["acked_seq"])  # type: ignore[index]
        paired = time.monotonic() - started
        samples = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append(memory(proc.pid)[0])
            time.sleep(0.25)
        status = control(data_dir / "control.sock", "status", attempts=3)["status"]  # type: ignore[assignment]
        acked = int(status["metrics"]["acked_seq"]) - acked_before  # type: ignore[index]
        peak = memory(proc.pid)[1]
        return Sample(devices, statistics.median(samples[len(samples) // 2:]), peak, paired,
                      acked)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def table(base: tuple[float, float], samples: list[Sample], command: str,
          zigpy: tuple[float, float] | None = None) -> str:
    lines = [f"$ {command}",
             f"floor (python: {FLOOR}): {base[0]:.0f} MiB RSS, {base[1]:.0f} MiB peak",
             *([f"zigpy alone (python: {ZIGPY}): {zigpy[0]:.0f} MiB RSS, {zigpy[1]:.0f} MiB peak"]
               if zigpy is not None else []),
             f"{'devices':>7} {'steady MiB':>10} {'peak MiB':>8} {'above floor':>11} "
             f"{'above zigpy':>11} {'reporting after':>15} {'events acked':>12}"]
    for s in samples:
        above_zigpy = f"{s.steady - zigpy[0]:>11.0f}" if zigpy is not None else f"{'':>11}"
        lines.append(f"{s.devices:>7} {s.steady:>10.0f} {s.peak:>8.0f} {s.steady - base[0]:>11.0f} "
                     f"{above_zigpy} {s.pair_seconds:>14.0f}s {s.events:>12}")
    return "\n".join(lines)


def main(devices: list[int], seconds: float, tick: float, speed: float, within: float,
         workdir: Path) -> tuple[tuple[float, float], tuple[float, float], list[Sample]]:
    base, zigpy = floor(), floor(ZIGPY)
    samples = []
    with mosquitto(workdir) as broker, acker(broker):
        for n in devices:
            samples.append(measure_hub(workdir, broker, n, seconds, tick, speed, within))
    return base, zigpy, samples


def cli(argv: list[str] | None = None
        ) -> tuple[tuple[float, float], tuple[float, float], list[Sample]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="50,200,500", help="comma-separated device counts")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured while reporting")
    parser.add_argument("--tick", type=float, default=2.0, help="seconds between reports")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulated time per real second (reporting intervals shrink)")
    parser.add_argument("--timeout", type=float, default=300.0, help="for pairing, per size")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="spoke-hub-memory-") as tmp:
        base, zigpy, samples = main([int(n) for n in args.devices.split(",")], args.seconds,
                                    args.tick, args.speed, args.timeout, Path(tmp))
    command = " ".join(["python -m bench.hub_memory",
                        *(argv if argv is not None else sys.argv[1:])])
    print(table(base, samples, command, zigpy))
    return base, zigpy, samples


if __name__ == "__main__":
    cli()
