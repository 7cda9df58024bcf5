"""Alembic in a process of its own: `python -m monitor.store.migrate`, the database URL on stdin.

`db.upgrade` starts it for a database that is neither new nor at head, so that Alembic and the
migration scripts never stay resident in the daemon. It migrates the database to head and exits 0,
or writes one line (`db.migration_failure`) last on stderr and exits 1. The URL comes on stdin, not on the
command line, where any user of the machine could read a password in it.
"""

from __future__ import annotations

import sys

from monitor.store.db import migration_failure, upgrade_sync


def main() -> None:
    url = sys.stdin.read()
    try:
        upgrade_sync(url)
    except Exception as exc:
        sys.stderr.write(migration_failure(exc) + "\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
