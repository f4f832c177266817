"""Terminal output shared by the CLI commands: rich logging (or JSON lines) and one-line errors.

rich is imported when something is first printed, not when the CLI starts: `spoke --help` and the
commands that print JSON never pay for it."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, cast

import typer

from spoke_logging import JsonFormatter, LogFormat, json_handler, log_format_from_env

if TYPE_CHECKING:
    from rich.console import Console


def command_group(text: str, **options: Any) -> typer.Typer:
    """A group of commands whose help is plain text: importing rich's help formatting (markdown,
    syntax highlighting, tracebacks) took longer than the rest of `spoke --help` together."""
    return typer.Typer(help=text, no_args_is_help=True, rich_markup_mode=None, **options)


@functools.cache
def stdout_console() -> Console:
    from rich.console import Console

    return Console()


@functools.cache
def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


class _FirstUse:
    """Stands for a rich Console, made when one of its attributes is first asked for."""

    def __init__(self, make: Callable[[], Console]) -> None:
        self._make = make

    def __getattr__(self, name: str) -> Any:
        return getattr(self._make(), name)


console = cast("Console", _FirstUse(stdout_console))
err_console = cast("Console", _FirstUse(stderr_console))

QUIET_LOGGERS = ("zigpy", "bellows", "zigpy_znp", "zigpy_deconz", "aiosqlite", "amqtt",
                 "transitions", "uvicorn.error", "httpx", "zhaquirks", "zha", "alembic")
PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# The format the command line asked for (--log-format); SPOKE_LOG_FORMAT when it did not.
_chosen: LogFormat | None = None


def choose_log_format(log_format: LogFormat | None) -> None:
    global _chosen
    _chosen = log_format


def log_format() -> LogFormat:
    """--log-format, else SPOKE_LOG_FORMAT, else text; an unknown value is one error line."""
    if _chosen is not None:
        return _chosen
    try:
        return log_format_from_env()
    except ValueError as exc:
        err_console.print(f"[bold red]error:[/] SPOKE_LOG_FORMAT: {exc}", highlight=False)
        raise typer.Exit(2) from None


def setup_logging(verbose: bool = False) -> None:
    """INFO for Spoke, WARNING for the libraries underneath (DEBUG everywhere with --verbose);
    coloured lines for a person at a terminal, plain lines into a file or the journal, or one JSON
    object per line for a log collector."""
    handler: logging.Handler
    as_json = log_format() == "json"
    if as_json:
        handler = json_handler(sys.stderr)
    elif sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(console=stderr_console(), show_path=False, rich_tracebacks=False,
                              log_time_format="%H:%M:%S")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        # A service's log (a file, the journal): one plain line per record. Rich lays each line
        # out for a screen, ~1 ms a line, which every command's log lines would wait for.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler],
                        force=True)
    if as_json:
        logging.captureWarnings(True)  # a warning is a JSON line too, not a bare text one
    if not verbose:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear error line and exit non-zero (a JSON log line under --log-format json)."""
    if _chosen == "json" or (_chosen is None and _env_json()):
        # Written here, not logged: a command may fail before it set up logging.
        record = logging.LogRecord("spoke", logging.ERROR, __file__, 0, message, None, None)
        sys.stderr.write(JsonFormatter().format(record) + "\n")
    else:
        # One line however long: what it names (an id, a URL) is copied whole.
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _env_json() -> bool:
    try:
        return log_format_from_env() == "json"
    except ValueError:
        return False
