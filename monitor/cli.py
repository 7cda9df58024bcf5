"""The `rekorwatch` command line (click). Each command is a thin shell over a module below it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, BinaryIO, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from monitor.config import ConfigError, Settings, load_settings
from monitor.contract import ALERT_STATUSES
from monitor.daemon import run_forever, run_once
from monitor.logging import configure_logging
from monitor.report import (
    ALERT_COLUMNS,
    HISTORY_COLUMNS,
    VERDICTS,
    alert_list,
    csv_text,
    delivery_summary,
    history,
    log_status,
    parse_time,
    render_table,
)
from monitor.store.db import upgrade
from monitor.store.queries import MAX_LIMIT, AlertFilter, SigningFilter
from monitor.trust import TrustRootError

EXIT_CONFIG = 2
T = TypeVar("T")

config_option = click.option(
    "-c",
    "--config",
    "config_file",
    default=None,
    metavar="FILE",
    help="Config file (default: $REKORWATCH_CONFIG, else ./rekorwatch.yaml, else built-in defaults).",
)


def settings_or_exit(config_file: str | None) -> Settings:
    """Load the config, or print every problem (one per line, with its YAML path) and exit 2."""
    try:
        return load_settings(config_file)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"config error: {problem}", err=True)
        sys.exit(EXIT_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rekorwatch")
def main() -> None:
    """rekorwatch: watch the Sigstore transparency logs for signatures made in your name."""


@main.command("check-config")
@config_option
def check_config(config_file: str | None) -> None:
    """Validate the config; exit 2 listing every problem with its YAML path."""
    settings_or_exit(config_file)
    click.echo("config ok")


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; expected failures become one line on stderr, never a traceback."""
    try:
        return asyncio.run(coro)
    except TrustRootError as exc:
        click.echo(f"error: trust root: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except (SQLAlchemyError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        click.echo(
            f"error: database: {first_line} (is the database reachable and migrated? `rekorwatch db upgrade`)", err=True
        )
        sys.exit(1)


@main.command()
@config_option
@click.option("--once", is_flag=True, help="One full cycle per log, then exit (0 ok, 3 inconsistent, 1 error).")
def run(config_file: str | None, once: bool) -> None:
    """Migrate the database, then tail every configured log until SIGTERM/SIGINT."""
    settings = settings_or_exit(config_file)
    configure_logging(os.environ.get("REKORWATCH_LOG_LEVEL", "info"))
    sys.exit(_run_async(run_once(settings) if once else run_forever(settings)))


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@config_option
def db_upgrade(config_file: str | None) -> None:
    """Migrate the database schema to the newest revision (Alembic)."""
    settings = settings_or_exit(config_file)
    _run_async(upgrade(settings.database))
    click.echo("database at head")


@main.command()
@config_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(config_file: str | None, fmt: str) -> None:
    """Per log (or shard): verified tree size, next index, lag, last checkpoint time."""
    settings = settings_or_exit(config_file)
    rows = _run_async(log_status(settings.database))
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(
            render_table(
                rows, ["url", "tree_id", "api", "verified_size", "next_index", "lag", "state", "last_checkpoint_at"]
            )
        )


FORMATS = click.Choice(["table", "json", "csv"])


def _time_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def emit(rows: list[dict[str, Any]], fmt: str, columns: tuple[str, ...]) -> None:
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        click.echo(csv_text(rows, list(rows[0]) if rows else columns), nl=False)
    else:
        click.echo(render_table(rows, columns))


@main.command("history")
@config_option
@click.option("--issuer", help="OIDC issuer URL.")
@click.option("--account", help="Account id or name.")
@click.option("--pipeline", help="Pipeline id or name.")
@click.option("--verdict", type=click.Choice(VERDICTS))
@click.option("--since", callback=_time_option, help="RFC 3339 time or YYYY-MM-DD (UTC).")
@click.option("--until", callback=_time_option, help="RFC 3339 time or YYYY-MM-DD (UTC), exclusive.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=100, show_default=True)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def history_command(
    config_file: str | None,
    issuer: str | None,
    account: str | None,
    pipeline: str | None,
    verdict: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    fmt: str,
) -> None:
    """The signing history, newest first."""
    settings = settings_or_exit(config_file)
    where = SigningFilter(issuer, account, pipeline, verdict, since, until)
    emit(_run_async(history(settings.database, where, limit)), fmt, HISTORY_COLUMNS)


@main.command("alerts")
@config_option
@click.option("--status", type=click.Choice(ALERT_STATUSES), help="pending: at least one delivery pending.")
@click.option("--kind", help="Alert kind, e.g. unexpected_pipeline.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=100, show_default=True)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def alerts_command(config_file: str | None, status: str | None, kind: str | None, limit: int, fmt: str) -> None:
    """Alerts and their delivery state (attempts, last error) per sink."""
    settings = settings_or_exit(config_file)
    rows = _run_async(alert_list(settings.database, AlertFilter(status, kind), limit))
    if fmt == "table":
        rows = [row | {"delivery": delivery_summary(row)} for row in rows]
    emit(rows, fmt, ALERT_COLUMNS)


@main.command("inspect")
@config_option
@click.argument("source", metavar="FILE|-", type=click.File("rb"))
def inspect_command(config_file: str | None, source: BinaryIO) -> None:
    """Decode and verify a Rekor v1 LogEntry or a sigstore bundle (v0.1-v0.3), offline; print JSON.

    Checks what the input carries against the config's trust root (never refreshed here):
    inclusion proof, checkpoint, signed entry timestamp, and each certificate's chain to a Fulcio
    CA valid at its notBefore. A check is null when the input has nothing to check. `verdict` is
    what `run` would store under the config's watch rules, null when the issuer is not watched
    (such certificates are not stored at all).
    """
    from monitor.inspect import InspectError, inspect_input

    settings = settings_or_exit(config_file)
    try:
        report = inspect_input(source.read(), settings)
    except InspectError as exc:
        click.echo(f"inspect: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(report, indent=2))


@main.command()
@click.option(
    "--listen",
    default="127.0.0.1:3000",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to serve; port 0 picks a free one.",
)
@click.option("--api", type=click.Choice(["v1", "tiles"]), default="v1", show_default=True)
@click.option(
    "--dir",
    "directory",
    default="simulator",
    show_default=True,
    metavar="DIR",
    help="Where to write trusted_root.json and signing_config.json.",
)
@click.option("--rate", type=float, default=0.0, show_default=True, help="Unwatched entries per second.")
@click.option("--prefill", type=int, default=0, show_default=True, help="Entries to generate before serving.")
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Delay every answer of the log's API by this many milliseconds (a log across a WAN).",
)
def simulate(listen: str, api: str, directory: str, rate: float, prefill: int, latency_ms: float) -> None:
    """Run a local Rekor-compatible log with its own CA, for tests, demos and benchmarks."""
    from pathlib import Path

    from monitor.simulate.server import parse_listen, run_until_signalled

    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    asyncio.run(
        run_until_signalled(
            host=host,
            port=port,
            directory=Path(directory),
            rate=rate,
            prefill=prefill,
            announce=click.echo,
            api=api,
            latency_ms=latency_ms,
        )
    )
