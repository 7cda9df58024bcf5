"""Per-log witness settings: `witness_policy` (text) or `witness_policy_file`, `witness_mode`, `origin`.

The policy is parsed when the config loads: its errors are config errors with their YAML path and line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ed25519

from monitor.cli import main
from monitor.config import ConfigError, parse_settings
from monitor.tlog.witness import cosigner_key, witness_vkey

VKEY = witness_vkey(cosigner_key("w1.example", ed25519.Ed25519PrivateKey.generate().public_key()))
POLICY = f"witness w1 {VKEY}\ngroup g any w1\nquorum g\n"


def config(**log: object) -> str:
    return json.dumps({"logs": [{"url": "https://log2025-1.rekor.sigstore.dev", "api": "tiles", **log}]})


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    return caught.value.problems


def test_a_policy_text_is_parsed_at_load() -> None:
    (log,) = parse_settings(config(witness_policy=POLICY)).logs or []
    policy = log.parsed_witness_policy
    assert policy is not None and policy.quorum == "g" and [w.name for w in policy.witnesses] == ["w1"]
    assert (log.witness_mode, log.origin) == ("enforce", None)


def test_a_policy_file_is_read_at_load(tmp_path: Path) -> None:
    path = tmp_path / "policy.txt"
    path.write_text(POLICY)
    (log,) = parse_settings(config(witness_policy_file=str(path), witness_mode="alert")).logs or []
    assert log.parsed_witness_policy is not None and log.witness_mode == "alert"


def test_no_policy_means_none() -> None:
    (log,) = parse_settings(config(origin="log2025-1.rekor.sigstore.dev")).logs or []
    assert log.parsed_witness_policy is None and log.origin == "log2025-1.rekor.sigstore.dev"


def test_policy_errors_carry_the_yaml_path_and_the_policy_line(tmp_path: Path) -> None:
    bad = f"witness w1 {VKEY}\n\ngroup g 1 w1 x\nquorum g\n"
    assert problems(config(witness_policy=bad)) == ['logs[0].witness_policy: line 3: unknown witness "x" in group g']
    path = tmp_path / "policy.txt"
    path.write_text(bad)
    assert problems(config(witness_policy_file=str(path))) == [
        'logs[0].witness_policy_file: line 3: unknown witness "x" in group g'
    ]


def test_file_and_mode_and_origin_problems() -> None:
    assert problems(config(witness_policy=POLICY, witness_policy_file="/p")) == [
        "logs[0].witness_policy_file: set witness_policy or witness_policy_file, not both"
    ]
    assert problems(config(witness_policy_file="/nonexistent/policy.txt")) == [
        "logs[0].witness_policy_file: cannot read /nonexistent/policy.txt: No such file or directory"
    ]
    assert problems(config(witness_mode="warn")) == ["logs[0].witness_mode: Input should be 'enforce' or 'alert'"]
    assert problems(config(origin="two\nlines")) == [
        "logs[0].origin: origin must be a checkpoint's first line: not empty, one line, no outer spaces"
    ]


def test_check_config_lists_the_policy_error_of_each_log(tmp_path: Path) -> None:
    path = tmp_path / "rekorwatch.yaml"
    logs = [
        {"url": "https://a.example", "witness_policy": POLICY},
        {"url": "https://b.example", "witness_policy": "quorum none\nquorum none\n"},
    ]
    path.write_text(json.dumps({"logs": logs}))
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)])
    assert result.exit_code == 2
    assert result.stderr == "config error: logs[1].witness_policy: line 2: a second quorum line (the first is line 1)\n"
