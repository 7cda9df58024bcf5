"""`rekorwatch inspect` through the real CLI: bundles v0.1-v0.3 and Rekor v1 entries, verified offline."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from monitor.cli import main
from monitor.simulate.ca import LocalCA, codefresh_identity
from monitor.simulate.entries import hashedrekord_body
from tests.paths import SIGSTORE as FIXTURES

GITHUB_WHEEL = FIXTURES / "bundle_v3_github.whl.sigstore"
DOCKER_ENTRY = FIXTURES / "docker-attest.tlog.mock.go.TestEntry.json"
SIGNING_FIELDS = [
    "issuer", "identity", "provider", "account_id", "account_name", "pipeline_id", "pipeline_name", "run_url",
    "source_repository", "source_ref", "not_before", "certificate_sha256", "chain_verified", "extensions", "verdict",
]  # fmt: skip


def write_config(directory: Path, root: Path | str, watch: dict[str, Any] | None = None) -> Path:
    config = directory / "rekorwatch.yaml"
    document = {"trust": {"root": str(root), "refresh": False}, "watch": watch or {}}
    config.write_text(json.dumps(document))  # JSON is YAML
    return config


def inspect(config: Path, source: Path | None = None, stdin: bytes | None = None) -> Result:
    arguments = ["inspect", "-c", str(config), str(source) if source else "-"]
    return CliRunner().invoke(main, arguments, input=stdin)


def report(config: Path, source: Path | None = None, stdin: bytes | None = None) -> dict[str, Any]:
    result = inspect(config, source, stdin)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def public_good(tmp_path: Path) -> Path:
    rule = {
        "issuer": "https://token.actions.githubusercontent.com",
        "identity_regexp": r"^https://github\.com/trailofbits/.*",
        "allow": [r".*/release\.yml@refs/tags/v.*"],
    }
    return write_config(tmp_path, FIXTURES / "trusted_root.json", {"identities": [rule]})


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    return write_config(tmp_path, FIXTURES / "trusted_root.staging.json")


def checks(document: dict[str, Any]) -> tuple[Any, Any, Any]:
    return document["inclusion_verified"], document["checkpoint_verified"], document["set_verified"]


def test_github_bundle_v0_2(public_good: Path) -> None:
    document = report(public_good, GITHUB_WHEEL)
    assert (document["kind"], document["api_version"], document["log_index"]) == ("hashedrekord", "0.0.1", 79605083)
    assert document["integrated_time"] == "2024-03-19T22:41:16Z"
    assert checks(document) == (True, True, True) and document["problems"] == []
    assert document["artifact_digest"] == "sha256:c4e92e9ecc828bef2aa7dba1de8ac983511f7532a0df11c770d39099a25cf201"
    (certificate,) = document["certificates"]
    assert all(name in certificate for name in SIGNING_FIELDS)
    assert certificate["provider"] == "github" and certificate["account_name"] == "trailofbits"
    assert certificate["chain_verified"] is True and certificate["verdict"] == "expected"
    assert certificate["not_before"] == "2024-03-19T22:41:15Z"
    assert certificate["extensions"]["build_config_uri"].endswith("release.yml@refs/tags/v0.1.2")


def test_dsse_bundle_v0_3_on_the_third_shard(public_good: Path) -> None:
    document = report(public_good, FIXTURES / "happy-path-intoto-in-dsse-v3.bundle.sigstore.json")
    assert (document["kind"], checks(document)) == ("dsse", (True, True, True))
    (certificate,) = document["certificates"]
    assert certificate["chain_verified"] is True and certificate["verdict"] == "unwatched"


def test_public_key_bundle_v0_1_without_proof(public_good: Path) -> None:
    document = report(public_good, FIXTURES / "bundle-publish.json")
    assert (document["kind"], document["api_version"]) == ("intoto", "0.0.2")
    assert checks(document) == (None, None, True)
    assert (document["certificates"], document["public_keys"]) == ([], 1)


@pytest.mark.parametrize(
    "name", ["staging-rekor-v2.txt.sigstore.json", "rekor2-checkpoint-two-sigs-cosigned.bundle.sigstore.json"]
)
def test_rekor_v2_bundles(staging: Path, name: str) -> None:
    document = report(staging, FIXTURES / name)
    assert (document["api_version"], document["integrated_time"]) == ("0.0.2", None)
    assert checks(document) == (True, True, None)
    (certificate,) = document["certificates"]
    assert certificate["chain_verified"] is True


def test_a_certificate_whose_issuer_is_not_watched_has_no_verdict(staging: Path) -> None:
    (certificate,) = report(staging, FIXTURES / "staging-rekor-v2.txt.sigstore.json")["certificates"]
    assert (certificate["provider"], certificate["identity"], certificate["verdict"]) == ("email", "jku@goto.fi", None)


def test_rekor_v1_log_entry_bare_wrapped_and_from_stdin(public_good: Path, tmp_path: Path) -> None:
    entry = json.loads(DOCKER_ENTRY.read_text())
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"24296fb24b8ad77a" + "0" * 64: entry}))
    for document in (
        report(public_good, DOCKER_ENTRY),
        report(public_good, wrapped),
        report(public_good, stdin=DOCKER_ENTRY.read_bytes()),
    ):
        assert (document["log_index"], checks(document)) == (59674396, (True, True, True))
        (certificate,) = document["certificates"]
        assert (certificate["issuer"], certificate["chain_verified"], certificate["verdict"]) == (None, False, None)


def test_another_trust_root_verifies_nothing(staging: Path) -> None:
    document = report(staging, GITHUB_WHEEL)
    assert checks(document) == (True, False, False)
    assert document["certificates"][0]["chain_verified"] is False
    assert len(document["problems"]) == 2


def tampered(tmp_path: Path, change: Any) -> Path:
    bundle = json.loads(GITHUB_WHEEL.read_text())
    change(bundle["verificationMaterial"]["tlogEntries"][0])
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(bundle))
    return path


def flip_base64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def test_a_wrong_signed_entry_timestamp(public_good: Path, tmp_path: Path) -> None:
    def change(entry: dict[str, Any]) -> None:
        entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)

    assert checks(report(public_good, tampered(tmp_path, change))) == (True, True, False)


def test_a_garbled_signed_entry_timestamp_or_an_impossible_index(public_good: Path, tmp_path: Path) -> None:
    def garble(entry: dict[str, Any]) -> None:
        entry["inclusionPromise"]["signedEntryTimestamp"] = "AAAA"

    def huge_index(entry: dict[str, Any]) -> None:
        entry["logIndex"] = str(2**60)

    assert checks(report(public_good, tampered(tmp_path, garble))) == (True, True, False)
    assert checks(report(public_good, tampered(tmp_path, huge_index))) == (True, True, False)


def test_a_wrong_inclusion_proof(public_good: Path, tmp_path: Path) -> None:
    def change(entry: dict[str, Any]) -> None:
        entry["inclusionProof"]["hashes"][3] = flip_base64(entry["inclusionProof"]["hashes"][3])

    assert checks(report(public_good, tampered(tmp_path, change))) == (False, True, True)


def test_a_checkpoint_for_another_tree(public_good: Path, tmp_path: Path) -> None:
    def change(entry: dict[str, Any]) -> None:
        entry["inclusionProof"]["rootHash"] = flip_base64(entry["inclusionProof"]["rootHash"])

    document = report(public_good, tampered(tmp_path, change))
    assert checks(document) == (False, False, True)
    assert any("another tree" in problem for problem in document["problems"])


def test_a_forged_checkpoint_signature(public_good: Path, tmp_path: Path) -> None:
    def change(entry: dict[str, Any]) -> None:
        checkpoint = entry["inclusionProof"]["checkpoint"]
        checkpoint["envelope"] = checkpoint["envelope"].replace("75441653\n", "75441654\n")

    assert checks(report(public_good, tampered(tmp_path, change)))[1] is False


def test_a_codefresh_signing_under_the_config(tmp_path: Path) -> None:
    ca = LocalCA.generate()
    root = {
        "certificateAuthorities": [
            {
                "certChain": {"certificates": [{"rawBytes": base64.b64encode(der).decode()} for der in ca.chain_der()]},
                "validFor": {"start": "2000-01-01T00:00:00Z"},
            }
        ],
        "tlogs": [],
    }
    (tmp_path / "trusted_root.json").write_text(json.dumps(root))
    watch = {
        "codefresh": [
            {
                "account_id": "628a80b693a15c0f9c13ab75",
                "account_name": "acme",
                "pipelines": [{"id": "p1", "name": "proj/build"}],
            }
        ]
    }
    config = write_config(tmp_path, tmp_path / "trusted_root.json", watch)
    issued = ca.issue(
        codefresh_identity(
            account_id="628a80b693a15c0f9c13ab75",
            account_name="acme",
            pipeline_id="p1",
            pipeline_name="proj/renamed",
            workflow_id="w1",
        )
    )
    entry = {"body": base64.b64encode(hashedrekord_body(issued.pem, b"artifact", issued.private_key)).decode()}
    document = report(config, stdin=json.dumps(entry).encode())
    assert checks(document) == (None, None, None) and document["log_index"] is None
    (certificate,) = document["certificates"]
    assert (certificate["provider"], certificate["pipeline_name"], certificate["chain_verified"]) == (
        "codefresh",
        "proj/renamed",
        True,
    )
    assert (certificate["verdict"], certificate["alert_kind"], certificate["severity"]) == (
        "renamed",
        "renamed",
        "info",
    )
    assert certificate["run_url"] == "https://g.codefresh.io/build/w1"


@pytest.mark.parametrize(
    "stdin",
    [
        b"{not json",
        b"\xff\xfe garbage",
        b"[]",
        b"{}",
        b'{"verificationMaterial": {"tlogEntries": []}}',
        b'{"verificationMaterial": {"tlogEntries": [{"canonicalizedBody": "%%%"}]}}',
        b'{"verificationMaterial": {"tlogEntries": [{"canonicalizedBody": "e30="}]}}',
        b'{"verificationMaterial": {"tlogEntries": [{"canonicalizedBody": "e30=", "logIndex": "-1"}]}}',
        b'{"mediaType": "application/json", "verificationMaterial": {}}',
        b'{"body": "e30=", "integratedTime": 99999999999999999999}',
        b'{"body": "e30=", "logID": "zz"}',
        b'{"body": "e30=", "verification": {"inclusionProof": {"logIndex": 0, "treeSize": 1, "rootHash": 5}}}',
        b'{"body": ["e30="]}',
    ],
)
def test_bad_input_gives_one_line_and_no_traceback(public_good: Path, stdin: bytes) -> None:
    result = inspect(public_good, stdin=stdin)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_missing_file_is_a_usage_error(public_good: Path, tmp_path: Path) -> None:
    result = inspect(public_good, tmp_path / "missing.json")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
