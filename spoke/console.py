"""Terminal output shared by the CLI commands: rich logging and one-line errors."""

from __future__ import annotations

import logging
from typing import NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler

console = Console()
err_console = Console(stderr=True)

QUIET_LOGGERS = ("zigpy", "bellows", "zigpy_znp", "zigpy_deconz", "aiosqlite", "amqtt",
                 "transitions", "uvicorn.error", "httpx", "zhaquirks", "zha", "alembic")


def setup_logging(verbose: bool = False) -> None:
    """INFO for Spoke, WARNING for the libraries underneath (DEBUG everywhere with --verbose)."""
    handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False,
                          log_time_format="%H:%M:%S")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[handler], force=True)
    if not verbose:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear error line and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
