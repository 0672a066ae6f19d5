"""Tables, JSON and human durations: the one place the CLI decides how things look.

Rich draws the tables only when it is installed and stdout is a terminal;
piped output is plain aligned text that ``grep`` and ``awk`` can read, and
``--json`` is for programs.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional, TextIO

__all__ = [
    "as_json_value",
    "cell",
    "format_age",
    "format_time",
    "print_json",
    "print_pairs",
    "print_table",
]


def as_json_value(value: Any) -> Any:
    """``value`` made of what JSON has: status values hold dataclasses, named tuples, tuples.

    A non-finite float (an unlimited threshold) becomes its name, ``"inf"``,
    since strict JSON has no spelling for it; anything else unknown, its ``str``.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    elif isinstance(value, tuple) and hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, Mapping):
        return {str(key): as_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [as_json_value(item) for item in value]
    return str(value)


def print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(as_json_value(value), indent=2, allow_nan=False) + "\n")


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
