"""Fault scenarios at full length over real processes (Mosquitto with Spoke's shipped config, or the
embedded amqtt broker, `spoke cloud run` workers, `spoke hub run` with simulated load generators).

For each scenario it prints what the hub emitted, what the cloud stored, the events lost and
duplicated, the seconds from the repair (broker started, process restarted) until the cloud had
every event emitted so far, and how the commands sent during the fault ended.

    .venv/bin/python -m bench.faults [--down 60] [--only "broker down"]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.fault_scenarios import SCENARIOS, Outcome, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down", type=float, default=60.0,
                        help="seconds the broker is down / a process stays dead")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS))
    args = parser.parse_args()
    names = args.only or list(SCENARIOS)
    print(f"fault scenarios, {args.down:.0f} s outage each, 2 load generators at 20 events/s each "
          "+ a bulb receiving a toggle every 0.5 s during the fault")
    header = (f"{'scenario':<27} {'emitted':>8} {'stored':>8} {'lost':>5} {'dupl':>5} "
              f"{'epochs':>6} {'resends':>7} {'recovery s':>10}  commands (refused: API down/hub offline)")
    print(header)
    print("-" * len(header))
    outcomes: list[Outcome] = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="spoke-faults-") as tmp:
            started = time.monotonic()
            o = run(name, Path(tmp), down=args.down, load_before=5.0, load_after=5.0)
            outcomes.append(o)
            commands = ", ".join(f"{k} {v}" for k, v in sorted(o.commands.items()))
            print(f"{o.scenario:<27} {o.emitted:>8} {o.stored:>8} {o.lost:>5} {o.duplicates:>5} "
                  f"{o.epochs:>6} {o.resends:>7} {o.recovery_s:>10.1f}  {commands}; refused "
                  f"{o.refused}; device ran "
                  f"{o.executions}  ({time.monotonic() - started:.0f} s)", flush=True)
    bad = [o.scenario for o in outcomes if o.lost or o.duplicates]
    print("all scenarios: 0 lost, 0 duplicates" if not bad else f"LOSSES in: {', '.join(bad)}")


if __name__ == "__main__":
    main()
