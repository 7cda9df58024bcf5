"""Alembic in a process of its own: `python -m monitor.store.migrate`, the database URL on stdin.

`db.Migration` starts it, so that Alembic and the migration scripts never stay resident in the
daemon. It migrates the database to head unless it is there already, and exits 0; or writes one line
(`db.migration_failure`) last on stderr and exits 1. The URL comes on stdin, not on the
command line, where any user of the machine could read a password in it.
"""

from __future__ import annotations

import asyncio
import sys

from monitor.store.db import HEAD_REVISION, migration_failure, stored_revision, upgrade_sync


def main() -> None:
    url = sys.stdin.read()
    try:
        if asyncio.run(stored_revision(url)) != HEAD_REVISION:
            upgrade_sync(url)
    except Exception as exc:
        sys.stderr.write(migration_failure(exc) + "\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
