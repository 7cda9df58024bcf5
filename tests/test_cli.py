"""The read commands on SQLite and PostgreSQL: every row streamed, OR-ed filters, validated choices,
relative times, one time precision, tables that fit, no database created by reading, quiet Ctrl-C,
and the `run` overrides. Commands run in-process through click (fast); what needs a real process
(a terminal, a signal) runs `python -m monitor` as a user would."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import pty
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import main, with_overrides
from monitor.config import ServerSettings, Settings
from monitor.store.queries import BATCH_SIZE
from tests.seed import EPOCH, LOG_URL, Spec, seed

ACME = Spec()
ACME_DEBUG = Spec(pipeline_id="65e6d5551e47e5bc243ca93f", pipeline_name="app/debug", verdict="unexpected_pipeline")
IMPOSTOR = Spec(account_id="77aa80b693a15c0f9c13ab99", account_name="ACME", verdict="impersonation")
OTHER = Spec(account_id="aaaa80b693a15c0f9c13ffff", account_name="other", pipeline_name="x/y", verdict="unwatched")


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def rekorwatch(*args: str, config: Path, env: dict[str, str] | None = None) -> Ran:
    """The command run in this process, as click runs it (stdout is no terminal)."""
    result = CliRunner().invoke(main, [*args, "-c", str(config)], env={"COLUMNS": None, **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def config_for(tmp_path: Path, database_url: str) -> Path:
    config = tmp_path / "rekorwatch.yaml"
    config.write_text(f"database: {database_url}\n")
    return config


def test_history_streams_every_row_unless_limited_in_every_format(database_url: str, tmp_path: Path) -> None:
    count = BATCH_SIZE + 7  # more than one batch
    asyncio.run(seed(database_url, [ACME] * count))
    config = config_for(tmp_path, database_url)

    exported = rekorwatch("history", "--format", "csv", config=config)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [int(row["id"]) for row in rows] == sorted(range(1, count + 1), reverse=True)
    assert {row["chain_verified"] for row in rows} == {"true"}
    first = rows[0]
    newest = (EPOCH + timedelta(minutes=count - 1)).strftime("%Y-%m-%dT%H:%M:%SZ")  # EPOCH has microseconds
    assert first["signed_at"] == first["integrated_time"] == newest
    assert json.loads(first["extensions"])["build_config_uri"].endswith(ACME.pipeline_id)

    objects = json.loads(rekorwatch("history", "--format", "json", config=config).stdout)
    assert len(objects) == count and objects[0]["chain_verified"] is True
    assert objects[0]["not_before"].endswith(":03Z") and objects[0]["extensions"]["build_config_uri"]

    limited = json.loads(rekorwatch("history", "--format", "json", "--limit", str(count - 1), config=config).stdout)
    assert [o["id"] for o in limited] == [o["id"] for o in objects[: count - 1]]
    assert rekorwatch("history", "--limit", "0", config=config).returncode == 2


def test_repeated_filters_are_or_ed_and_choices_are_checked(database_url: str, tmp_path: Path) -> None:
    asyncio.run(seed(database_url, [ACME, ACME_DEBUG, IMPOSTOR, OTHER, ACME]))
    config = config_for(tmp_path, database_url)

    def indexes(*args: str) -> list[int]:
        result = rekorwatch("history", "--format", "json", *args, config=config)
        assert result.returncode == 0, result.stderr
        return [row["log_index"] for row in json.loads(result.stdout)]

    assert indexes("--verdict", "impersonation", "--verdict", "unwatched") == [3, 2]
    assert indexes("--account", OTHER.account_id, "--account", "acme") == [4, 3, 1, 0]  # an id, a name
    assert indexes("--account", "acme", "--pipeline", "app/debug", "--pipeline", "x/y") == [1]
    assert indexes("--account", "acme", "--verdict", "expected") == [4, 0]

    typo = rekorwatch("history", "--verdict", "expectd", config=config)
    assert typo.returncode == 2 and "'expected'" in typo.stderr and "impersonation" in typo.stderr
    kind = rekorwatch("alerts", "--kind", "impersonaton", config=config)
    assert kind.returncode == 2 and "'impersonation'" in kind.stderr and "log_stalled" in kind.stderr


def test_alerts_list_kinds_or_ed_with_times_to_the_second(database_url: str, tmp_path: Path) -> None:
    kinds = [("renamed", "info"), ("log_stalled", "warning"), ("impersonation", "critical")]
    asyncio.run(seed(database_url, [ACME], alerts=kinds))
    config = config_for(tmp_path, database_url)
    result = rekorwatch("alerts", "--format", "json", "--kind", "renamed", "--kind", "impersonation", config=config)
    alerts = json.loads(result.stdout)
    assert [a["kind"] for a in alerts] == ["impersonation", "renamed"]
    for alert in alerts:
        assert len(alert["created_at"]) == 20 and alert["created_at"].endswith("Z")
        [delivery] = alert["deliveries"]
        assert delivery["sink"] == "hook" and len(delivery["next_attempt_at"]) == 20
    table = rekorwatch("alerts", "--status", "pending", config=config, env={"COLUMNS": "100"})
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "CREATED_AT", "KIND", "SEVERITY", "DELIVERY", "SUMMARY"]
    assert len(lines) == 4 and all(len(line) <= 100 for line in lines) and "hook:pending(0)" in table.stdout


def test_relative_and_absolute_times(database_url: str, tmp_path: Path) -> None:
    asyncio.run(seed(database_url, [ACME] * 3))  # signed 2026-01-02T03:04:05, :05:05 and :06:05
    config = config_for(tmp_path, database_url)

    def count(*args: str) -> int:
        result = rekorwatch("history", "--format", "json", *args, config=config)
        assert result.returncode == 0, result.stderr
        return len(json.loads(result.stdout))

    assert count("--since", "2026-01-02T03:05:05Z") == 2
    assert count("--since", "2026-01-02", "--until", "2026-01-02T03:06:05+00:00") == 2
    assert count("--since", "24h") == 0  # the seeded signings are older than a day
    assert count("--until", "1d") == 3
    bad = rekorwatch("history", "--since", "yesterday", config=config)
    assert bad.returncode == 2 and "30m, 24h, 7d" in bad.stderr and "Traceback" not in bad.stderr


def test_the_table_has_a_log_column_fits_the_terminal_and_shows_no_escapes(database_url: str, tmp_path: Path) -> None:
    hostile = Spec(pipeline_name="evil\x1b[2J\x1b]0;pwned\x07/\u202eexe.txt")
    asyncio.run(seed(database_url, [ACME, hostile]))
    config = config_for(tmp_path, database_url)

    narrow = rekorwatch("history", config=config, env={"COLUMNS": "90"})
    lines = narrow.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "SIGNED_AT",
        "LOG",
        "LOG_INDEX",
        "VERDICT",
        "ACCOUNT",
        "PIPELINE",
        "IDENTITY",
    ]
    assert all(len(line) <= 90 for line in lines) and "…" in narrow.stdout
    assert "\x1b" not in narrow.stdout and "\u202e" not in narrow.stdout and "\x07" not in narrow.stdout

    wide = rekorwatch("history", "--wide", config=config, env={"COLUMNS": "90"})
    assert "rekor.example.org" in wide.stdout and ACME.account_id in wide.stdout  # the whole identity
    assert "\x1b" not in wide.stdout and "evil\ufffd[2J" in wide.stdout
    piped = rekorwatch("history", config=config)  # no terminal, no COLUMNS: nothing is cut
    assert "…" not in piped.stdout and LOG_URL.removeprefix("https://") in piped.stdout


def at_a_terminal(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    """Run with stdout on a pseudo-terminal (what a user sees), stderr captured."""
    primary, secondary = pty.openpty()
    try:
        return subprocess.run(
            [sys.executable, "-m", "monitor", *args, "-c", str(config)],
            stdout=secondary,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(secondary)
        os.close(primary)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the hint is the same on both
def test_a_limit_at_a_terminal_says_how_many_match(database_url: str, tmp_path: Path) -> None:
    asyncio.run(seed(database_url, [ACME] * 5))
    config = config_for(tmp_path, database_url)
    shown = at_a_terminal("history", "--limit", "2", config=config)
    assert shown.returncode == 0 and "showing 2 of 5 signings" in shown.stderr
    assert at_a_terminal("history", "--limit", "5", config=config).stderr == ""  # nothing more to show
    piped = rekorwatch("history", "--limit", "2", config=config)
    assert piped.stderr == "" and len(piped.stdout.splitlines()) == 3


@pytest.mark.parametrize("command", ["status", "history", "alerts"])
def test_reading_never_creates_a_database(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nowhere" / "rekorwatch.db"
    config = tmp_path / "rekorwatch.yaml"
    config.write_text(f"database: sqlite+aiosqlite:///{missing}\n")
    result = rekorwatch(command, config=config)
    assert result.returncode == 1
    assert f"no database at {missing}" in result.stderr and "Traceback" not in result.stderr
    assert not missing.parent.exists()

    empty = tmp_path / "empty.db"
    empty.touch()
    config.write_text(f"database: sqlite+aiosqlite:///{empty}\n")
    result = rekorwatch(command, config=config)
    assert result.returncode == 1 and "not migrated: run `rekorwatch db upgrade`" in result.stderr
    assert empty.stat().st_size == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_unmigrated_postgresql_database_is_named_as_such(database_url: str, tmp_path: Path) -> None:
    result = rekorwatch("history", config=config_for(tmp_path, database_url))
    assert result.returncode == 1 and "not migrated: run `rekorwatch db upgrade`" in result.stderr


def _default_ctrl_c() -> None:
    """A shell without job control starts background jobs (CI's, say) with SIGINT ignored, and Python
    then never raises KeyboardInterrupt: the child gets Ctrl-C's default handling, as at a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupted_export(config: Path) -> tuple[int, bytes, bytes, str]:
    """Start a CSV export, read a little, press Ctrl-C, read the rest: (exit code, head, rest, stderr)."""
    command = [sys.executable, "-m", "monitor", "history", "--format", "csv", "-c", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_ctrl_c)
    assert process.stdout is not None and process.stderr is not None
    head = process.stdout.read(4096)  # it is streaming, and soon blocked on the full pipe
    process.send_signal(signal.SIGINT)
    rest = process.stdout.read()
    stderr = process.stderr.read().decode()
    return process.wait(timeout=60), head, rest, stderr


def test_ctrl_c_stops_an_export_quietly_with_130(database_url: str, tmp_path: Path) -> None:
    asyncio.run(seed(database_url, [ACME] * (BATCH_SIZE * 3)))  # several MB of CSV: more than a pipe holds
    code, head, rest, stderr = interrupted_export(config_for(tmp_path, database_url))
    assert code == 130 and stderr == ""
    assert head.startswith(b"id,log_url,") and 0 < (head + rest).count(b"\n") < BATCH_SIZE * 3 + 1


def test_run_overrides_listen_and_checks_both_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where the config's relative database would be created
    settings = Settings(server=ServerSettings(listen="127.0.0.1:9464", api_token="s3cret"))
    changed = with_overrides(settings, "0.0.0.0:9999")
    assert (changed.server.host, changed.server.port) == ("0.0.0.0", 9999)
    assert changed.server.api_token is not None and changed.server.api_token.get_secret_value() == "s3cret"
    assert with_overrides(settings, None) is settings
    config = tmp_path / "rekorwatch.yaml"
    config.write_text("database: sqlite+aiosqlite:///unused.db\n")
    bad_listen = rekorwatch("run", "--listen", "nowhere", config=config)
    assert bad_listen.returncode == 2 and "is not HOST:PORT" in bad_listen.stderr
    bad_level = rekorwatch("run", "--log-level", "loud", config=config)
    assert bad_level.returncode == 2 and "'debug'" in bad_level.stderr
    assert not (tmp_path / "unused.db").exists()


def test_status_shows_each_log_with_its_origin_and_api_in_every_format(database_url: str, tmp_path: Path) -> None:
    asyncio.run(seed(database_url, [ACME]))
    config = config_for(tmp_path, database_url)
    table = rekorwatch("status", config=config, env={"COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split()[:4] == ["URL", "ORIGIN", "API", "KIND"]
    assert row.split()[:6] == [LOG_URL, "rekor.example.org", "-", "1", "v1", "rekor"]
    [shown] = json.loads(rekorwatch("status", "--format", "json", config=config).stdout)
    assert (shown["url"], shown["origin"], shown["api"]) == (LOG_URL, "rekor.example.org - 1", "v1")
