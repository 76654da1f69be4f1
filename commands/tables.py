"""Tables as docs/USER_GUIDE.md shows them: rounded corners, a title row, columns padded to the widest cell."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import click
from wcwidth import wcswidth

EMPTY = "—"
STATUS_ICONS = {
    "active": "🟢",
    "paused": "🟡",
    "triggering": "🔵",
    "completed": "✅",
    "completed_with_failures": "🟠",
    "failed": "🔴",
}


def display_width(text: str) -> int:
    width = wcswidth(text)
    return len(text) if width < 0 else width


def _pad(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))


def _centre(text: str, width: int) -> str:
    spare = width - display_width(text)
    left = spare // 2
    return " " * left + text + " " * (spare - left)


def render_table(title: str, rows: Sequence[Sequence[str]], headers: Sequence[str] | None = None) -> str:
    """Cells may hold several lines; every row has as many cells as the first."""
    all_rows = ([list(headers)] if headers else []) + [list(row) for row in rows]
    columns = len(all_rows[0])
    widths = [max(display_width(line) for row in all_rows for line in row[i].split("\n")) for i in range(columns)]
    inner = sum(widths) + 3 * columns - 1
    title_width = display_width(title) + 4
    if title_width > inner:
        widths[-1] += title_width - inner
        inner = title_width

    def rule(left: str, middle: str, right: str) -> str:
        return left + middle.join("─" * (width + 2) for width in widths) + right

    def line(row: Sequence[str]) -> list[str]:
        cells = [cell.split("\n") for cell in row]
        height = max(len(cell) for cell in cells)
        return [
            "│"
            + "│".join(" " + _pad(cell[i] if i < len(cell) else "", widths[c]) + " " for c, cell in enumerate(cells))
            + "│"
            for i in range(height)
        ]

    out = ["╭" + "─" * inner + "╮", "│" + _centre(title, inner) + "│", rule("├", "┬", "┤")]
    if headers:
        out += line(headers)
        out.append(rule("├", "┼", "┤"))
    for row in rows:
        out += line(row)
    out.append(rule("╰", "┴", "╯"))
    return "\n".join(out)


def when(moment: datetime | None) -> str:
    """UTC, in the format docs/USER_GUIDE.md shows."""
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else EMPTY


def status_label(status: str) -> str:
    icon = STATUS_ICONS.get(status)
    return f"{icon} {status}" if icon else status


def success(message: str) -> None:
    click.echo(f"✓ {message}")
