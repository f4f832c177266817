"""`spoke simulate`: impersonate real devices from ZHA diagnostics and check what Spoke derives.

stdout carries only the result (inspect: one JSON object per device; conformance: the table and
its last line), so other tools can read it; timing and errors go to stderr.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spoke.console import command_group, err_console, fail, log_format
from spoke_logging import json_handler

if TYPE_CHECKING:
    from spoke.simulate import Inspection

simulate_app = command_group("Virtual devices from ZHA diagnostics files: inspect, conformance.")

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Library logging on stderr.")]


def _quiet_logging(verbose: bool) -> None:
    """Library chatter (zigpy, zha-quirks) stays off stdout, and off stderr unless asked for."""
    handler: logging.Handler
    if log_format() == "json":
        handler = json_handler(sys.stderr)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.ERROR, handlers=[handler],
                        force=True)


def _inspect(paths: list[Path]) -> tuple[list[Inspection], float]:
    import asyncio

    from spoke.simulate import inspect_files

    started = time.perf_counter()
    inspections = asyncio.run(inspect_files(paths))
    return inspections, time.perf_counter() - started


@simulate_app.command("inspect")
def inspect(
    files: Annotated[list[Path], typer.Argument(help="ZHA diagnostics files (or directories).")],
    verbose: Verbose = False,
) -> None:
    """Pair each file's virtual device through a hub (sim radio) and print what Spoke reads:
    one JSON object per line."""
    from spoke.simulate import diagnostics_files

    _quiet_logging(verbose)
    paths = diagnostics_files(files)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        fail(f"no such file: {', '.join(missing)}")
    inspections, seconds = _inspect(paths)
    for inspection in inspections:
        sys.stdout.write(json.dumps(inspection.as_json(), ensure_ascii=False) + "\n")
    sys.stdout.flush()
    failed = [i for i in inspections if i.error]
    err_console.print(f"inspected {len(inspections)} devices in {seconds:.1f} s"
                      + (f", {len(failed)} failed to pair" if failed else ""), highlight=False)
    if failed:
        raise typer.Exit(1)


@simulate_app.command("conformance")
def conformance(
    directory: Annotated[Path, typer.Argument(help="Directory of ZHA diagnostics files.")],
    verbose: Verbose = False,
) -> None:
    """Inspect every file and compare with the entities ZHA derived (a row per device, then
    `conformance: N/M (P%)`)."""
    from spoke.conformance import check_file, table
    from spoke.simulate import diagnostics_files

    _quiet_logging(verbose)
    if not directory.is_dir():
        fail(f"{directory} is not a directory")
    paths = diagnostics_files([directory])
    if not paths:
        fail(f"no *.json files in {directory}")
    inspections, seconds = _inspect(paths)
    results = [check_file(i.source, i.as_json()) for i in inspections]
    for row in table(results):
        sys.stdout.write(row + "\n")
    sys.stdout.flush()
    err_console.print(f"inspected {len(inspections)} devices in {seconds:.1f} s", highlight=False)
