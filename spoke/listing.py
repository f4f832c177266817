"""Lists and records in the terminal, for a person, or as JSON, for a program.

A person copies ids out of these lists into the next command, so an id is never cut, folded or
wrapped, at any terminal width: a table keeps its id columns whole and folds the others; when the
ids and a few characters of every other column cannot fit, each item becomes a block with its id on
a line of its own. `--json` prints what the API answers (the same objects, the same field names).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from spoke.console import stdout_console

# The narrowest a folded column gets before the table gives way to blocks: a few words.
FOLDED_MIN = 16
INDENT = 2  # a block's fields, under its first line


def print_json(data: Any) -> None:
    """JSON on stdout, uncoloured and unwrapped whatever the terminal: for programs to read."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def iso(moment: datetime | None) -> str | None:
    """A time as the API writes it: ISO 8601, UTC as ``Z``."""
    if moment is None:
        return None
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def table_width(headers: Sequence[str], rows: Sequence[Sequence[str]], whole: frozenset[int]
                ) -> int:
    """The fewest columns the table takes with its whole columns at full width and the others
    folded to ``FOLDED_MIN`` (rich's box: one edge, then a space, the cell, a space and an edge)."""
    width = 1
    for i, header in enumerate(headers):
        longest = max([_longest_line(header), *(_longest_line(row[i]) for row in rows)])
        width += (longest if i in whole else min(longest, FOLDED_MIN)) + 3
    return width


def print_list(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
               whole: Sequence[int] = (0,), title: str | None = None) -> None:
    """A table of ``rows`` whose columns ``whole`` (the ids) are never cut; one block per row when
    the terminal is too narrow for that."""
    console = stdout_console()
    keep = frozenset(whole)
    if table_width(headers, rows, keep) <= console.width:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title)
        for i, header in enumerate(headers):
            if i in keep:
                longest = max([len(header), *(_longest_line(row[i]) for row in rows)])
                table.add_column(header, no_wrap=True, min_width=longest, overflow="fold")
            else:
                table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))  # names are text, not rich markup
        console.print(table, highlight=False)
        return
    if title:
        console.print(title, style="bold", highlight=False)
    for n, row in enumerate(rows):
        if n:
            console.print()
        print_record(headers, row, whole=whole)


def print_record(labels: Sequence[str], values: Sequence[str], *,
                 whole: Sequence[int] = (0,)) -> None:
    """One item as a block: its first field alone on the first line, then its other fields as
    ``label: value`` lines, values folding under themselves. A field of ``whole`` that cannot fit
    gets a line of its own however long (the terminal may show it on two, but a copy takes it
    whole)."""
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    console = stdout_console()
    console.print(values[0], soft_wrap=True, highlight=False, markup=False, style="bold")
    label_width = max((len(label) for label in labels[1:]), default=0) + 1
    value_width = console.width - INDENT - label_width - 1
    grid: Table | None = None
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        if i == 0:
            continue
        if i in whole and _longest_line(value) > value_width:
            if grid is not None:
                console.print(Padding(grid, (0, 0, 0, INDENT), expand=False))
                grid = None
            console.print(f"{' ' * INDENT}{label}: {value}", soft_wrap=True, highlight=False,
                          markup=False)
            continue
        if grid is None:
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True, min_width=label_width, style="dim")
            grid.add_column(overflow="fold")
        grid.add_row(f"{label}:", Text(value))
    if grid is not None:
        console.print(Padding(grid, (0, 0, 0, INDENT), expand=False))


def _longest_line(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)
