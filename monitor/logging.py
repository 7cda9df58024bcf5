"""structlog setup: JSON lines by default (for log shippers), human console output on a TTY."""

from __future__ import annotations

import logging
import sys

import structlog

from monitor.progress import clear_live_line


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Route structlog and the stdlib loggers to stderr, as JSON unless stderr is a terminal."""
    as_json = not sys.stderr.isatty() if json is None else json
    numeric = logging.getLevelName(level.upper())
    shared = [
        clear_live_line,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer] if as_json else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(name)s: %(message)s")
    for noisy in ("urllib3", "tuf"):  # a failed TUF refresh is reported once, by trust.py
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
