"""The config schema: every section of DESIGN.md, ${ENV}, durations, and errors with their YAML path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import ConfigError, Settings, parse_duration, parse_settings, substitute_env

ROOT = Path(__file__).resolve().parents[1]
DESIGN_EXAMPLE = """
database: sqlite+aiosqlite:///rekorwatch.db
trust:
  root: public-good
  refresh: true
  signing_config: public-good
logs:
  - url: https://rekor.sigstore.dev
    api: v1
    start: head
poll_interval: 10s
watch:
  issuers: [https://oidc.codefresh.io]
  codefresh:
    - account_id: 628a80b693a15c0f9c13ab75
      account_name: ilia-codefresh
      platform_url: https://g.codefresh.io
      pipelines:
        - id: 6612ad6384ef42f18019b7e9
          name: sigstore-blog/keyless-signature
  identities:
    - issuer: https://token.actions.githubusercontent.com
      identity_regexp: '^https://github\\.com/myorg/.*'
      allow: ['^https://github\\.com/myorg/app/\\.github/workflows/release\\.yml@refs/heads/main$']
alerts:
  - type: webhook
    url: https://hooks.example.com/rekorwatch
    secret: ${REKORWATCH_WEBHOOK_SECRET}
    min_severity: warning
server:
  listen: 127.0.0.1:9464
  api_token: ${REKORWATCH_API_TOKEN}
"""


def test_the_design_example_parses_with_env_substitution() -> None:
    settings = parse_settings(DESIGN_EXAMPLE, {"REKORWATCH_WEBHOOK_SECRET": "s3cret"})
    assert settings.poll_interval == 10.0
    assert settings.logs is not None and settings.logs[0].start == "head"
    account = settings.watch.codefresh[0]
    assert account.pipelines[0].name == "sigstore-blog/keyless-signature" and not account.all_pipelines
    assert settings.alerts[0].secret is not None and settings.alerts[0].secret.get_secret_value() == "s3cret"
    assert settings.server.api_token is None  # unset variable -> empty -> no token
    assert "s3cret" not in repr(settings)


def test_the_shipped_default_config_is_valid() -> None:
    parse_settings((ROOT / "config" / "rekorwatch.yaml").read_text(), {})


def test_defaults_without_a_file() -> None:
    settings = Settings()
    assert settings.database.startswith("sqlite+aiosqlite://")
    assert settings.logs is None and settings.trust.root == "public-good"
    assert settings.watch.watched_issuers() == {"https://oidc.codefresh.io"}


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10), ("5m", 300), ("1.5h", 5400), ("250ms", 0.25), (7, 7), ("2d", 172800)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["often", "-5s", "0", "10 parsecs", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_env_default_and_missing() -> None:
    assert substitute_env("a ${X:-dflt} ${Y} ${Z}", {"Z": "z"}) == "a dflt  z"


def test_every_error_is_reported_with_its_yaml_path() -> None:
    text = """
poll_interval: often
database: mysql://nope
logs:
  - url: ftp://x
    api: v3
    start: -1
ct_logs:
  - url: ctfe.example
    start: -5
    origin: " padded"
watch:
  codefresh:
    - account_name: x
      pipelines: [{name: a}]
  identities:
    - issuer: x
      identity_regexp: '(unclosed'
alerts:
  - type: slack
  - type: pigeon
server: {listen: nowhere}
unknown_key: 1
"""
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, {})
    problems = caught.value.problems
    paths = [p.split(":", 1)[0] for p in problems]
    for expected in [
        "poll_interval",
        "database",
        "logs[0].url",
        "logs[0].api",
        "logs[0].start",
        "ct_logs[0].url",
        "ct_logs[0].start",
        "ct_logs[0].origin",
        "watch.codefresh[0].account_id",
        "watch.codefresh[0].pipelines[0].id",
        "watch.identities[0].identity_regexp",
        "alerts[0]",
        "alerts[1].type",
        "server.listen",
        "unknown_key",
    ]:
        assert expected in paths, (expected, problems)


def test_star_allows_every_pipeline() -> None:
    settings = parse_settings("watch: {codefresh: [{account_id: a, pipelines: '*'}]}", {})
    assert settings.watch.codefresh[0].all_pipelines


@pytest.mark.parametrize("text", ["[1, 2]", "a: [", "just a string"])
def test_not_a_mapping_or_not_yaml(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_settings(text, {})


def rekorwatch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args], capture_output=True, text=True, cwd=cwd, check=False
    )


def test_check_config_cli_exits_2_listing_each_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("poll_interval: often\nwatch:\n  codefresh:\n    - account_name: x\n")
    result = rekorwatch("check-config", "-c", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any("poll_interval" in line for line in lines)
    assert any("watch.codefresh[0].account_id" in line for line in lines)
    assert "Traceback" not in result.stderr


def test_check_config_cli_accepts_a_good_file_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(DESIGN_EXAMPLE)
    assert rekorwatch("check-config", "-c", str(good)).returncode == 0
    missing = rekorwatch("check-config", "-c", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
