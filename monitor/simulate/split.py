"""A split view: a second port showing the same log (same name, key and tree ids) with another history.

Until `split(at)` the second port serves the honest log itself. `split(at)` makes the fork: a copy of
the honest log whose entries from global index `at` on are `rewritten`. Entries the honest log gets
later are mirrored into the fork before each request the second port answers, rewritten the same way
from `at` on (entries appended through the second port after the split exist in the fork only). Each
view is validly signed by the log key, so each verifies alone; side by side they prove that the log
lies. Rotating the honest log's shards after a split is not mirrored.

The witnesses watch the honest port: the fork's checkpoints carry no cosignature, unless the split
is `witnessed` (colluding witnesses, cosigning both views).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from monitor.simulate.log import rewritten

if TYPE_CHECKING:
    from monitor.simulate.server import Simulator


@dataclass
class SplitView:
    honest: Simulator
    served: Simulator
    """What the second port serves: the honest log until the split, then the fork."""
    at: int | None = None
    mirrored: int = field(default=0, repr=False)
    """The honest log's entries [0, mirrored) are in the fork."""

    def split(self, at: int, *, witnessed: bool = False) -> None:
        """Fork the second view from global index `at` on (again from the honest log if split before)."""
        if at < 0:
            raise ValueError(f"cannot split at a negative index ({at})")
        honest = self.honest.log
        fork = honest.copy()
        for index in range(at, fork.size):
            location = fork.locate(index)
            assert location is not None
            location.shard.replace(location.index, rewritten(location.shard.bodies[location.index]))
        witnesses = self.honest.witnesses if witnessed else self.honest.witnesses.silent()
        self.served.show(fork, witnesses)
        self.at, self.mirrored = at, honest.size

    def catch_up(self) -> None:
        """Mirror the honest log's new entries into the fork."""
        if self.at is None:
            return
        honest, fork = self.honest.log, self.served.log
        for index in range(self.mirrored, honest.size):
            location = honest.locate(index)
            assert location is not None
            body = location.shard.bodies[location.index]
            fork.append(body if index < self.at else rewritten(body), location.shard.integrated_times[location.index])
        self.mirrored = honest.size
