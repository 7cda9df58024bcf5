"""Read-side views of the store shared by the CLI and the API: log objects, tables for people."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monitor.store.models import LogRow, iso
from monitor.store.repository import Store


def log_object(row: LogRow) -> dict[str, Any]:
    """DESIGN.md's log object. Sizes are per shard; `next_index` is global; lag counts this shard."""
    return {
        "url": row.url,
        "origin": row.origin,
        "api": row.api,
        "tree_id": row.tree_id,
        "tree_size": row.tree_size,
        "verified_size": row.verified_size,
        "next_index": row.next_index,
        "lag": max(row.shard_offset + row.tree_size - row.next_index, 0),
        "last_checkpoint_at": iso(row.last_checkpoint_at),
        "state": row.state,
        "retired": row.retired,
    }


async def log_status(database: str) -> list[dict[str, Any]]:
    store = Store.open(database)
    try:
        return [log_object(row) for row in await store.logs()]
    finally:
        await store.close()


def render_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain aligned text table; empty input says so."""
    if not rows:
        return "(nothing yet)"
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(line.rstrip() for line in lines)
