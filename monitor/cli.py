"""The `rekorwatch` command line (click). Each command is a thin shell over a module below it.

Exit codes: 0 ok, 1 a runtime failure (database unreachable or not ready), 2 a bad config or bad
arguments (click's usage errors are 2 too), 3 `run --once` found an inconsistent log, 130 Ctrl-C.
Commands that only read (status, history, alerts) never create or migrate a database, stream
their rows as they come, and stop quietly on Ctrl-C or when the reader of their output goes away.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, BinaryIO, NoReturn, TypeVar

import click
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from monitor.child import decoding_in_a_process, discard_process, start_decode_worker
from monitor.config import ConfigError, ServerSettings, Settings, read_config
from monitor.contract import ALERT_STATUSES, EXIT_CONFIG, EXIT_ERROR, EXIT_INTERRUPTED, AlertKind, Verdict
from monitor.listing import CsvWriter, JsonWriter, Listing, Record, TableWriter, Writer, stream_listing
from monitor.logging import configure_logging
from monitor.report import (
    ALERTS,
    CERTIFICATES,
    LOGS,
    SIGNINGS,
    alert_batches,
    certificate_batches,
    log_status,
    records_of,
    signing_batches,
)
from monitor.store.db import DatabaseNotReadyError, MigrationError, require_current_schema, upgrade
from monitor.store.queries import (
    AlertFilter,
    CertificateFilter,
    SigningFilter,
    count_alerts,
    count_certificates,
    count_signings,
)
from monitor.store.repository import Store
from monitor.timefmt import parse_time
from monitor.trust import TrustRootError

LOG_LEVELS = ("debug", "info", "warning", "error")
T = TypeVar("T")

config_option = click.option(
    "-c",
    "--config",
    "config_file",
    default=None,
    metavar="FILE",
    help="Config file (default: $REKORWATCH_CONFIG, else ./rekorwatch.yaml, else built-in defaults).",
)


def settings_or_exit(config_file: str | None, *, warn: bool = False) -> Settings:
    """Load the config, or print every problem (one per line, with its YAML path) and exit 2;
    with `warn`, print its warnings (empty secrets) on stderr."""
    try:
        settings, warnings = read_config(config_file)
    except ConfigError as exc:
        _config_errors(exc.problems)
    for warning in warnings if warn else ():
        click.echo(f"warning: {warning}", err=True)
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rekorwatch")
def main() -> None:
    """rekorwatch: watch the Sigstore transparency logs for signatures made in your name."""


@main.command("check-config")
@config_option
def check_config(config_file: str | None) -> None:
    """Validate the config and its trust root (offline); exit 2 listing every problem with its YAML
    path. Warnings (a secret whose ${VAR} is empty) go to stderr and leave the exit code 0."""
    from monitor.configcheck import trust_problems

    problems = trust_problems(settings_or_exit(config_file, warn=True))
    if problems:
        _config_errors(problems)
    click.echo("config ok")


def _config_errors(problems: list[str]) -> NoReturn:
    for problem in problems:
        click.echo(f"config error: {problem}", err=True)
    sys.exit(EXIT_CONFIG)


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; expected failures become one line on stderr, never a traceback.
    Ctrl-C exits 130, quietly, once the write in flight is done; a reader of the output that went
    away (`| head`) ends it without a word."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        sys.exit(EXIT_ERROR)
    except TrustRootError as exc:
        _fail(f"trust root: {exc}", EXIT_CONFIG)
    except DatabaseNotReadyError as exc:
        _fail(f"database: {exc}")
    except MigrationError as exc:
        _fail(f"database: migrating it failed: {exc}")
    except (SQLAlchemyError, OSError) as exc:
        _fail(f"database: {_first_line(exc)} (is the database reachable and migrated? `rekorwatch db upgrade`)")


def _listen_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            ServerSettings(listen=value)
        except ValidationError as exc:
            raise click.BadParameter(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    return value


def with_overrides(settings: Settings, listen: str | None) -> Settings:
    """The settings with the command line's overrides applied (they win over the file)."""
    if listen is None:
        return settings
    server = ServerSettings.model_validate({**settings.server.model_dump(), "listen": listen})
    return settings.model_copy(update={"server": server})


@main.command()
@config_option
@click.option("--once", is_flag=True, help="One full cycle per log, then exit (0 ok, 3 inconsistent, 1 error).")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Log level (default: $REKORWATCH_LOG_LEVEL, else info).",
)
@click.option(
    "--listen", callback=_listen_option, metavar="HOST:PORT", help="Serve the API there instead of server.listen."
)
def run(config_file: str | None, once: bool, log_level: str | None, listen: str | None) -> None:
    """Migrate the database, then tail every configured log until SIGTERM/SIGINT."""
    settings = with_overrides(settings_or_exit(config_file, warn=True), listen)
    configure_logging((log_level or os.environ.get("REKORWATCH_LOG_LEVEL") or "info").lower())
    code = _run_async(_daemon(settings, once))
    # What the run made: the interpreter's last collections would take 0.3 s to free nothing the
    # end of the process does not free anyway.
    gc.freeze()
    sys.exit(code)


async def _daemon(settings: Settings, once: bool) -> int:
    """The decode process starts first, so that its imports overlap the daemon's own (the daemon
    imported here only: the read commands start twice as fast)."""
    decode_worker = await start_decode_worker() if decoding_in_a_process() else None
    try:
        from monitor.daemon import run_forever, run_once

        # What start-up made lives as long as the daemon: garbage collections stop walking it.
        gc.freeze()
        if once:
            return await run_once(settings, decode_worker=decode_worker)
        return await run_forever(settings, decode_worker=decode_worker)
    finally:
        if decode_worker is not None:  # already ended, unless the daemon stopped before using it
            await discard_process(decode_worker)


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


@main.group("log")
def log_group() -> None:
    """Operator decisions about a log."""


@log_group.command("reset")
@config_option
@click.argument("url")
@click.option("--reason", default="reset by an operator", show_default=True, help="Recorded in the alert.")
@click.option("--confirm", is_flag=True, help="Do it without asking (required when not at a terminal).")
def log_reset(config_file: str | None, url: str, reason: str, confirm: bool) -> None:
    """Accept an inconsistent log's history as it is now, after an operator looked at it.

    Its inconsistent shards forget their verified checkpoint: the next cycle trusts the log's newest
    checkpoint again (as on a first start) and reads on from where the cursor stood. Its
    log_inconsistent alerts are resolved, and the reset is recorded as a log_reset alert.
    """
    settings = settings_or_exit(config_file)
    url = url.rstrip("/")
    if not confirm:
        if not sys.stdin.isatty():
            click.echo("log reset: add --confirm (not at a terminal, nothing to ask)", err=True)
            sys.exit(EXIT_CONFIG)
        click.confirm(f"Trust the current history of {url} and read on?", abort=True)
    shards = _run_async(reset_log(settings, url, reason))
    if not shards:
        click.echo(f"log reset: {url} has no inconsistent shard: nothing to reset", err=True)
        sys.exit(1)
    click.echo(f"reset {shards} shard(s) of {url}: its next cycle trusts its newest checkpoint")


async def reset_log(settings: Settings, url: str, reason: str) -> int:
    from monitor.alerting import AlertRaiser
    from monitor.alerts.dispatcher import outbox_sinks

    await require_current_schema(settings.database)
    async with Store.open(settings.database) as store:
        rows = await store.logs(url)
        if not rows:
            return 0
        return await AlertRaiser(store, outbox_sinks(settings.alerts)).log_reset(
            url, rows[0].origin, rows[0].api, reason
        )


# reading ---------------------------------------------------------------------------------------


def terminal_width(out: BinaryIO) -> int | None:
    """Columns to fit a table in: $COLUMNS, else the terminal's; None (no limit) into a pipe or file."""
    if os.environ.get("COLUMNS", "").isdecimal():
        return max(int(os.environ["COLUMNS"]), 20)
    return shutil.get_terminal_size().columns if out.isatty() else None


def writer_for(listing: Listing, fmt: str, wide: bool, out: BinaryIO) -> Writer:
    if fmt == "json":
        return JsonWriter(listing)
    if fmt == "csv":
        return CsvWriter(listing)
    return TableWriter(listing, width=terminal_width(out), wide=wide)


async def list_rows(
    database: str,
    listing: Listing,
    batches: Callable[[Store], AsyncGenerator[Sequence[Record], None]],
    count: Callable[[Store], Awaitable[int]],
    *,
    fmt: str,
    limit: int | None,
    wide: bool,
) -> None:
    """Stream a listing to stdout; when `limit` cut it short at a terminal, say how many match."""
    await require_current_schema(database)
    out = sys.stdout.buffer
    async with Store.open(database) as store:
        written = await stream_listing(batches(store), writer_for(listing, fmt, wide, out), out)
        if limit is not None and written == limit and out.isatty():
            total = await count(store)
            if total > written:
                click.echo(f"showing {written} of {total} {listing.noun}: raise or drop --limit for more", err=True)


async def show_status(database: str, fmt: str, wide: bool) -> None:
    await require_current_schema(database)
    rows = await log_status(database)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    writer = TableWriter(LOGS, width=terminal_width(sys.stdout.buffer), wide=wide)
    sys.stdout.buffer.write(writer.rows(records_of(LOGS, rows)) + writer.end(len(rows)))


wide_option = click.option("--wide", is_flag=True, help="Tables: every column in full, whatever the terminal width.")
limit_option = click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="At most this many rows, newest first (default: all)."
)
format_option = click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)


def identity_filter_options(command: Callable[..., None]) -> Callable[..., None]:
    """--issuer, --account, --pipeline and --verdict: the filters signings and CT certificates share."""
    for option in reversed(
        (
            click.option("--issuer", multiple=True, help="OIDC issuer URL; repeat for any of several."),
            click.option("--account", multiple=True, help="Account id or name; repeat for any of several."),
            click.option("--pipeline", multiple=True, help="Pipeline id or name; repeat for any of several."),
            click.option(
                "--verdict",
                multiple=True,
                type=click.Choice([verdict.value for verdict in Verdict]),
                help="Repeat for any of several.",
            ),
        )
    ):
        command = option(command)
    return command


@main.command()
@config_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@wide_option
def status(config_file: str | None, fmt: str, wide: bool) -> None:
    """Per log (or shard): verified tree size, next index, lag, last checkpoint time."""
    settings = settings_or_exit(config_file)
    _run_async(show_status(settings.database, fmt, wide))


def _time_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


TIME_HELP = "RFC 3339 time, YYYY-MM-DD (UTC), or a span before now: 30m, 24h, 7d, 2w."


@main.command("history")
@config_option
@identity_filter_options
@click.option("--since", callback=_time_option, help=TIME_HELP)
@click.option("--until", callback=_time_option, help=f"{TIME_HELP} Exclusive.")
@limit_option
@format_option
@wide_option
def history_command(
    config_file: str | None,
    issuer: tuple[str, ...],
    account: tuple[str, ...],
    pipeline: tuple[str, ...],
    verdict: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
    fmt: str,
    wide: bool,
) -> None:
    """The signing history, newest first: every matching signing unless --limit is given."""
    settings = settings_or_exit(config_file)
    where = SigningFilter(issuer, account, pipeline, verdict, since, until)
    _run_async(
        list_rows(
            settings.database,
            SIGNINGS,
            lambda store: signing_batches(store, where, limit),
            lambda store: count_signings(store, where),
            fmt=fmt,
            limit=limit,
            wide=wide,
        )
    )


@main.command("certificates")
@config_option
@identity_filter_options
@click.option("--unlogged", is_flag=True, help="Only certificates no Rekor signing used (yet).")
@click.option("--since", callback=_time_option, help=f"{TIME_HELP} By CT timestamp.")
@click.option("--until", callback=_time_option, help=f"{TIME_HELP} Exclusive.")
@limit_option
@format_option
@wide_option
def certificates_command(
    config_file: str | None,
    issuer: tuple[str, ...],
    account: tuple[str, ...],
    pipeline: tuple[str, ...],
    verdict: tuple[str, ...],
    unlogged: bool,
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
    fmt: str,
    wide: bool,
) -> None:
    """Certificates of watched issuers seen in Fulcio's CT log, newest first; --unlogged: those that
    signed nothing in Rekor (issued in your name and used quietly, or not yet read there)."""
    settings = settings_or_exit(config_file)
    where = CertificateFilter(issuer, account, pipeline, verdict, False if unlogged else None, since, until)
    _run_async(
        list_rows(
            settings.database,
            CERTIFICATES,
            lambda store: certificate_batches(store, where, limit),
            lambda store: count_certificates(store, where),
            fmt=fmt,
            limit=limit,
            wide=wide,
        )
    )


@main.command("alerts")
@config_option
@click.option("--status", type=click.Choice(ALERT_STATUSES), help="pending: at least one delivery pending.")
@click.option(
    "--kind", multiple=True, type=click.Choice([kind.value for kind in AlertKind]), help="Repeat for any of several."
)
@limit_option
@format_option
@wide_option
def alerts_command(
    config_file: str | None, status: str | None, kind: tuple[str, ...], limit: int | None, fmt: str, wide: bool
) -> None:
    """Alerts and their delivery state (attempts, last error) per sink, newest first."""
    settings = settings_or_exit(config_file)
    where = AlertFilter(status, kind)
    _run_async(
        list_rows(
            settings.database,
            ALERTS,
            lambda store: alert_batches(store, where, limit),
            lambda store: count_alerts(store, where),
            fmt=fmt,
            limit=limit,
            wide=wide,
        )
    )


@main.command("inspect")
@config_option
@click.option(
    "--check-build",
    is_flag=True,
    help="Also ask the Codefresh API about each watched account's signing (online; needs the account's api_key).",
)
@click.argument("source", metavar="FILE|-", type=click.File("rb"))
def inspect_command(config_file: str | None, check_build: bool, source: BinaryIO) -> None:
    """Decode and verify a Rekor v1 LogEntry or a sigstore bundle (v0.1-v0.3), offline; print JSON.

    Checks what the input carries against the config's trust root (never refreshed here):
    inclusion proof, checkpoint, signed entry timestamp, and each certificate's chain to a Fulcio
    CA valid at its notBefore. A check is null when the input has nothing to check. `verdict` is
    what `run` would store under the config's watch rules, null when the issuer is not watched
    (such certificates are not stored at all). With --check-build, each certificate gets `build`:
    the Codefresh builds API's answer judged as `run` judges it, or null when `run` would not ask.
    """
    from monitor.inspect import InspectError, inspect_input, inspect_with_build_checks

    settings = settings_or_exit(config_file)
    data = source.read()
    try:
        if check_build:
            configure_logging(os.environ.get("REKORWATCH_LOG_LEVEL", "warning"))
            report = asyncio.run(inspect_with_build_checks(data, settings))
        else:
            report = inspect_input(data, settings)
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
    help="Where to write trusted_root.json, signing_config.json and witness_policy.txt.",
)
@click.option("--rate", type=float, default=0.0, show_default=True, help="Unwatched entries per second.")
@click.option("--prefill", type=int, default=0, show_default=True, help="Entries to generate before serving.")
@click.option("--split-view", is_flag=True, help="Also serve the log on a second port, forked on demand.")
@click.option("--ct-api", type=click.Choice(["rfc6962", "static"]), default="rfc6962", show_default=True)
@click.option(
    "--ct-prefill", type=int, default=0, show_default=True, help="Precertificates to log in CT only, before serving."
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Delay every answer of the log's API by this many milliseconds (a log across a WAN).",
)
def simulate(
    listen: str,
    api: str,
    directory: str,
    rate: float,
    prefill: int,
    split_view: bool,
    ct_api: str,
    ct_prefill: int,
    latency_ms: float,
) -> None:
    """Run a local Rekor-compatible log with its own CA, CT log and witnesses, for tests, demos and benchmarks."""
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
            split_view=split_view,
            ct_api=ct_api,
            ct_prefill=ct_prefill,
            latency_ms=latency_ms,
        )
    )
