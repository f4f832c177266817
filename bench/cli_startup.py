"""How long the `spoke` command line takes, from exec to exit, beside the interpreter's own start.

Starts Mosquitto and a real `spoke cloud run` (bench.rig, SQLite) holding one hub's devices, then
runs each command below once per round, in turn, so that the machine's drift hits all alike, and
prints the median wall time of each, and the CPU time its process used (user + system: steadier
than wall time on a busy machine), beside the floor measured in the same rounds:

- `python -c pass`: the interpreter starting and stopping (the floor);
- `spoke --help` and `python -m spoke --help`: the command line alone;
- `spoke devices list` (and `--json`) and `spoke hubs list`: a REST call to the cloud, every page
  followed, then a table (or JSON) on stdout.

    .venv/bin/python -m bench.cli_startup [--rounds 20] [--devices 50]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.api_lists import seed
from bench.rig import SPOKE, Rig

FLOOR = "python -c pass"
PYTHON = sys.executable


def commands() -> dict[str, list[str]]:
    return {
        FLOOR: [PYTHON, "-c", "pass"],
        "spoke --help": [SPOKE, "--help"],
        "python -m spoke --help": [PYTHON, "-m", "spoke", "--help"],
        "spoke devices list": [SPOKE, "devices", "list"],
        "spoke devices list --json": [SPOKE, "devices", "list", "--json"],
        "spoke hubs list": [SPOKE, "hubs", "list"],
    }


@dataclass
class Report:
    devices: int
    seconds: dict[str, list[float]] = field(default_factory=dict)  # wall, exec to exit
    cpu: dict[str, list[float]] = field(default_factory=dict)  # the process's user + system
    listed: list[str] = field(default_factory=list)  # device ids `devices list --json` printed
    table: str = ""  # what `devices list` printed (last round)

    def median_ms(self, name: str) -> float:
        return statistics.median(self.seconds[name]) * 1000

    def median_cpu_ms(self, name: str) -> float:
        return statistics.median(self.cpu[name]) * 1000


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of one run (this process waits for nothing else meanwhile)."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, _children_cpu() - cpu, done.stdout


def run(workdir: Path, rounds: int, n_devices: int) -> Report:
    rig = Rig(workdir)
    seed(rig.database_url, 1, n_devices)
    rig.start(hub=False)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
        env.update(SPOKE_API_URL=rig.api(), SPOKE_API_TOKEN=rig.token, COLUMNS="120")
        report = Report(n_devices, {name: [] for name in commands()},
                        {name: [] for name in commands()})
        for _ in range(rounds):
            for name, argv in commands().items():
                seconds, cpu, out = _timed(argv, env)
                report.seconds[name].append(seconds)
                report.cpu[name].append(cpu)
                if name == "spoke devices list --json":
                    report.listed = [d["id"] for d in json.loads(out)]
                elif name == "spoke devices list":
                    report.table = out
        return report
    finally:
        rig.stop()


def print_report(report: Report, command: str) -> None:
    floor, cpu_floor = report.median_ms(FLOOR), report.median_cpu_ms(FLOOR)
    rounds = len(report.seconds[FLOOR])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{command}\n{rounds} rounds, {report.devices} devices in the cloud, load average {load}; "
          "medians")
    print(f"{'command':<28}{'wall ms':>8}{'- floor':>9}{'x floor':>9}{'cpu ms':>8}{'x floor':>9}")
    for name in report.seconds:
        ms, cpu = report.median_ms(name), report.median_cpu_ms(name)
        print(f"{name:<28}{ms:>8.0f}{ms - floor:>9.0f}{ms / floor:>9.1f}{cpu:>8.0f}"
              f"{cpu / cpu_floor:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--devices", type=int, default=50)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="spoke-bench-cli-"))
    try:
        report = run(workdir, args.rounds, args.devices)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(report, f".venv/bin/python -m bench.cli_startup --rounds {args.rounds} "
                         f"--devices {args.devices}")


if __name__ == "__main__":
    main()
