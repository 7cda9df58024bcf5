"""Every bad config is exit 2 with its YAML path and no traceback, from check-config and from any other
command; check-config also checks the trust root against the logs, and warns about empty secrets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor.cli import main
from tests.paths import SIGSTORE

STAGING_ROOT = SIGSTORE / "trusted_root.staging.json"
BAD_CONFIGS = {
    "groups nested 5,000 deep": (
        "watch: {identities: [{issuer: x, identity_regexp: '" + "(" * 5000 + "a" + ")" * 5000 + "'}]}",
        "watch.identities[0].identity_regexp: ",
    ),
    "a 5 MB pattern": (
        "watch: {identities: [{issuer: x, identity_regexp: a, allow: ['" + "a" * 5_000_000 + "']}]}",
        "watch.identities[0].allow[0]: ",
    ),
    "a backreference": (r"watch: {identities: [{issuer: x, identity_regexp: '(a)\1'}]}", "backreferences"),
    "poll_interval 1e-7": ("poll_interval: 1.0e-7", "poll_interval: must be at least 1s"),
    "poll_interval 0.5s": ("poll_interval: 500ms", "poll_interval: must be at least 1s"),
    "poll_interval forever": ("poll_interval: .inf", "poll_interval: a duration must be a finite number"),
    "database port notaport": (
        "database: postgresql+asyncpg://rw:hunter2@db:notaport/rekorwatch",
        "database: not a database URL ('notaport' is no port number?)",
    ),
    "database port out of range": ("database: postgresql+asyncpg://db:70000/x", "database: port 70000 is out of range"),
    "an unknown driver": ("database: postgresql+psycopg2://db/x", "database: 'postgresql+psycopg2' is not a supported"),
    "not a mapping": ("- database: x\n- poll_interval: 1s\n", "(top level): expected a mapping of settings"),
    "not YAML": ("database: [", "(file): not valid YAML"),
    "YAML nested 10,000 deep": ("[" * 10000 + "]" * 10000, "(file): not valid YAML"),
    "a misspelt key": (
        "poll_intervall: 10s",
        "poll_intervall: unknown key 'poll_intervall' (did you mean 'poll_interval'?)",
    ),
    "a misspelt nested key": (
        "watch:\n  codefresh:\n    - account_id: a\n      pipline: [x]\n",
        "watch.codefresh[0].pipline: unknown key 'pipline' (did you mean 'pipelines'?)",
    ),
}


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rekorwatch.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case", BAD_CONFIGS)
@pytest.mark.parametrize("command", ["check-config", "history"])
def test_a_bad_config_is_exit_2_with_its_yaml_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, command: str
) -> None:
    monkeypatch.chdir(tmp_path)  # where the default database, rekorwatch.db, would be created
    text, expected = BAD_CONFIGS[case]
    result = invoke(command, "-c", config(tmp_path, text))
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("config error: ") and len(line) < 400 for line in lines), lines
    assert any(expected in line for line in lines), lines
    assert "hunter2" not in result.stderr
    assert not (tmp_path / "rekorwatch.db").exists()


def test_the_trust_root_is_loaded_and_checked_against_the_logs(tmp_path: Path) -> None:
    def check(text: str) -> Result:
        return invoke("check-config", "-c", config(tmp_path, text))

    missing = check(f"trust: {{root: {tmp_path / 'nope.json'}}}\n")
    assert missing.exit_code == 2 and "config error: trust.root: cannot read" in missing.stderr

    (tmp_path / "list.json").write_text("[1, 2]")
    malformed = check(f"trust: {{root: {tmp_path / 'list.json'}}}\n")
    assert (
        malformed.exit_code == 2 and "trust.root: " in malformed.stderr and "malformed trust root" in malformed.stderr
    )

    (tmp_path / "garbled.json").write_text('{"tlogs": [{"baseUrl": "https://x"')
    assert check(f"trust: {{root: {tmp_path / 'garbled.json'}}}\n").exit_code == 2

    staging = f"trust: {{root: {STAGING_ROOT}, refresh: false}}\n"
    no_key = check(staging + "logs: [{url: https://rekor.sigstage.dev}, {url: https://rekor.sigstore.dev}]\n")
    assert no_key.exit_code == 2
    assert (
        "config error: logs[1].url: " in no_key.stderr and "has no key for https://rekor.sigstore.dev" in no_key.stderr
    )
    assert "logs[0]" not in no_key.stderr

    no_signing_config = check(staging.replace("}", f", signing_config: {tmp_path / 'nope.json'}}}"))
    assert no_signing_config.exit_code == 2 and "config error: trust.signing_config: " in no_signing_config.stderr

    empty = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    useless = check(f"trust: {{root: {tmp_path / 'empty.json'}}}\n")
    assert "no transparency log key" in useless.stderr and "no Fulcio CA" in useless.stderr

    good = check(staging + "logs: [{url: https://rekor.sigstage.dev}]\n")
    assert good.exit_code == 0 and good.stdout == "config ok\n"


def test_the_shipped_roots_are_checked_offline(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).resolve().parents[1] / "config" / "rekorwatch.yaml", tmp_path / "rekorwatch.yaml")
    result = invoke("check-config", "-c", str(tmp_path / "rekorwatch.yaml"), env={"REKORWATCH_API_TOKEN": "t0ken"})
    assert result.exit_code == 0 and result.stderr == "", result.stderr


SECRETS = """
server: {listen: "127.0.0.1:9464", api_token: "${API_TOKEN}"}
alerts:
  - type: webhook
    url: "${HOOK_URL}"
    secret: "${HOOK_SECRET}"
  - type: pagerduty
    routing_key: "${PD_KEY:-}"
"""


def test_empty_secrets_are_warned_about_and_not_an_error(tmp_path: Path) -> None:
    path = config(tmp_path, SECRETS)
    env: dict[str, str | None] = {"API_TOKEN": None, "HOOK_URL": "https://hooks.example.com/x", "HOOK_SECRET": ""}
    warned = invoke("check-config", "-c", path, env={**env, "PD_KEY": "k"})
    assert warned.exit_code == 0 and warned.stdout == "config ok\n"
    assert warned.stderr.splitlines() == [
        "warning: server.api_token: ${API_TOKEN} is empty (is the environment variable set?): "
        "/api/* answers anyone who reaches server.listen",
        "warning: alerts[0].secret: ${HOOK_SECRET} is empty (is the environment variable set?): deliveries go unsigned",
    ]
    quiet = invoke("check-config", "-c", path, env={**env, "API_TOKEN": "t", "HOOK_SECRET": "s", "PD_KEY": "k"})
    assert quiet.exit_code == 0 and quiet.stderr == ""
    missing_key = invoke("check-config", "-c", path, env={**env, "PD_KEY": None})
    assert (
        missing_key.exit_code == 2
        and "config error: alerts[1]: a pagerduty sink needs a routing_key" in missing_key.stderr
    )
