"""Large writes to a pipe reach the reader whole even when the writer is stopped and continued in
the middle of them (CPython's buffered writer loses the rest of such a write: monitor.whole_writes)."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

from monitor.whole_writes import write_whole
from tests.stopping import stopped_and_continued

BLOCKS = 300
WRITER = f"""
import sys
from monitor.whole_writes import write_whole
from tests.test_whole_writes import block
for number in range({BLOCKS}):
    write_whole(sys.stdout.buffer, block(number))
"""
ROOT = Path(__file__).resolve().parent.parent  # the writer imports `block` from here


def block(number: int) -> bytes:
    return bytes([number % 251]) * (60_000 + number * 7_919 % 30_000)


async def test_blocks_larger_than_a_pipe_arrive_whole_from_a_writer_stopped_and_continued() -> None:
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    assert writer.stdout is not None
    with stopped_and_continued(writer.pid):
        for number in range(BLOCKS):
            expected = block(number)
            received = await writer.stdout.readexactly(len(expected))
            assert received == expected, f"block {number} arrived spoiled"
            if number % 5 == 0:
                await asyncio.sleep(0.002)  # a reader busy elsewhere: the pipe fills, the writer blocks
        assert await writer.stdout.read() == b""
    assert await writer.wait() == 0


def test_a_stream_without_a_descriptor_is_written_through_its_own_write() -> None:
    out = io.BytesIO()
    write_whole(out, b"first ")
    write_whole(out, b"second")
    assert out.getvalue() == b"first second"


def test_what_the_stream_buffered_before_goes_first(tmp_path: Path) -> None:
    path = tmp_path / "out"
    with path.open("wb") as out:
        out.write(b"buffered ")
        write_whole(out, b"whole")
        assert path.read_bytes() == b"buffered whole"
