"""Where the time goes, per process, in a py-spy profile of `rekorwatch run --once`.

    py-spy record --subprocesses --rate 200 --format raw -o prof.txt -- rekorwatch run --once -c bench.yaml
    .venv/bin/python bench/profile_summary.py prof.txt [--top 25] [--entries N]

For each process (the daemon, its decode worker...): how many samples it has (at the sampling rate,
its busy time), then the functions holding the most samples, inclusive (the function and what it
calls) and self (the function's own lines). With --entries, each is also given in µs per entry.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PROCESS = re.compile(r'process (\d+):"([^"]*)";?')  # a command may hold ';', never '"'


@dataclass
class ProcessProfile:
    command: str
    samples: int = 0
    inclusive: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)


def function_name(frame: str) -> str:
    """`name (path/to/file.py:123)` -> `name (file.py)`: one entry per function, not per line."""
    match = re.fullmatch(r"(.*) \((.*?)(?::\d+)?\)", frame)
    if match is None:
        return frame
    return f"{match.group(1)} ({Path(match.group(2)).name})"


def read_profile(path: Path) -> dict[str, ProcessProfile]:
    processes: dict[str, ProcessProfile] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        owners = list(PROCESS.finditer(stack))
        count = int(count_text)
        if owners:  # recorded with --subprocesses: a child's samples sit under its parent's frame
            owner = owners[-1]
            pid, command, frames = owner.group(1), owner.group(2), stack[owner.end() :].split(";")
        else:
            pid, command, frames = "profiled", "(recorded without --subprocesses)", stack.split(";")
        profile = processes.setdefault(pid, ProcessProfile(command))
        profile.samples += count
        names = [function_name(frame) for frame in frames if frame and not frame.startswith("thread ")]
        for name in set(names):
            profile.inclusive[name] += count
        if names:
            profile.own[names[-1]] += count
    return processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=200, help="the sampling rate given to py-spy")
    parser.add_argument("--entries", type=int, default=0, help="entries read: also print µs per entry")
    args = parser.parse_args()
    for pid, profile in sorted(read_profile(args.profile).items(), key=lambda item: -item[1].samples):
        seconds = profile.samples / args.rate
        print(f"\nprocess {pid}: {profile.samples} samples = {seconds:.2f}s busy  {profile.command[:100]}")
        for title, counter in (("inclusive", profile.inclusive), ("self", profile.own)):
            print(f"  {title}:")
            for name, count in counter.most_common(args.top):
                per_entry = f"  {count / args.rate / args.entries * 1e6:7.2f} µs/entry" if args.entries else ""
                print(f"    {count / profile.samples:6.1%}{per_entry}  {name[:110]}")


if __name__ == "__main__":
    main()
