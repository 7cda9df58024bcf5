"""The `rekorwatch` command line (click). Each command is a thin shell over a module below it."""

from __future__ import annotations

import sys

import click

from monitor.config import ConfigError, Settings, load_settings

EXIT_CONFIG = 2

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
