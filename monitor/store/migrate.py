"""Alembic in a process of its own: `python -m monitor.store.migrate`, the database URL on stdin.

`db.upgrade` starts it for a database that is neither new nor at head, so that Alembic and the
migration scripts never stay resident in the daemon. It migrates the database to head and exits 0,
or writes one line (the error's type and first line: never a traceback, or the URL) last on stderr
and exits 1. The URL comes on stdin (monitor/child.py).
"""

from __future__ import annotations

import sys

from alembic import command

from monitor.store.db import alembic_config


def main() -> None:
    url = sys.stdin.read()
    try:
        command.upgrade(alembic_config(url), "head")
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        sys.stderr.write(f"{type(exc).__name__}: {lines[0] if lines else 'no message'}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
