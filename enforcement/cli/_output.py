"""Tables, JSON and human durations: the one place the CLI decides how things look.

Rich draws the tables only when it is installed and stdout is a terminal;
piped output is plain aligned text that ``grep`` and ``awk`` can read, and
``--json`` is for programs.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any, Optional, TextIO

__all__ = ["cell", "format_age", "format_time", "print_json", "print_pairs", "print_table"]


def print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def cell(value: Any) -> str:
    """One table cell: booleans as yes/no, nothing as ``-``, floats without noise."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_time(epoch: Optional[float]) -> Optional[str]:
    """An epoch time as ISO-8601 UTC, for JSON and tables alike."""
    if epoch is None:
        return None
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _rich_console(out: TextIO) -> Any:
    if not out.isatty():
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=out)


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    out: TextIO,
    *,
    title: Optional[str] = None,
) -> None:
    """``rows`` as a table of ``columns`` (keys of each row, also the headers)."""
    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    console = _rich_console(out)
    if console is not None:
        from rich.table import Table

        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for line in cells:
            table.add_row(*line)
        console.print(table)
        return
    if title:
        out.write(f"{title}\n")
    widths = [
        max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)
    ]
    for line in [list(columns), *cells]:
        out.write("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() + "\n")


def print_pairs(pairs: Sequence[tuple[str, Any]], out: TextIO) -> None:
    """``name: value`` lines, names aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        out.write(f"{name + ':':<{width + 1}} {cell(value)}\n")
