"""`rekorwatch inspect` reports which witnesses of the configured policy cosigned a bundle's checkpoint.

Through the real CLI, on the real staging bundles; the log is found by the checkpoint's origin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from monitor.cli import main
from tests.test_witness import SIGSTORE, STAGING_POLICY, flip_last_byte_of_line

HAPPY_PATH = SIGSTORE / "rekor2-dsse-happy-path.bundle.sigstore.json"
TWO_SIGS = SIGSTORE / "rekor2-checkpoint-two-sigs-cosigned.bundle.sigstore.json"
ALPHA3 = "https://log2025-alpha3.rekor.sigstage.dev"


def inspect(tmp_path: Path, bundle: Path, logs: list[dict[str, Any]] | None) -> dict[str, Any]:
    config = tmp_path / "rekorwatch.yaml"
    document: dict[str, Any] = {"trust": {"root": str(SIGSTORE / "trusted_root.staging.json"), "refresh": False}}
    if logs is not None:
        document["logs"] = logs
    config.write_text(json.dumps(document))
    result = CliRunner().invoke(main, ["inspect", "-c", str(config), str(bundle)])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_the_staging_policy_is_met_by_the_three_public_witnesses(tmp_path: Path) -> None:
    report = inspect(tmp_path, HAPPY_PATH, [{"url": ALPHA3, "api": "tiles", "witness_policy": STAGING_POLICY}])
    assert report["checkpoint_verified"] is True and report["problems"] == []
    stamp = "2026-05-13T19:23:34Z"
    assert report["witnesses"] == {
        "log": ALPHA3,
        "origin": "log2025-alpha3.rekor.sigstage.dev",
        "quorum_met": True,
        "cosigners": [{"name": name, "timestamp": stamp} for name in ("geomys", "mullvad", "google")],
        "invalid": [],
        "missing": [],
        "future": [],
    }


def test_a_flipped_cosignature_is_reported_invalid(tmp_path: Path) -> None:
    bundle = json.loads(HAPPY_PATH.read_text())
    checkpoint = bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
    checkpoint["envelope"] = flip_last_byte_of_line(checkpoint["envelope"], 1)  # witness.stagemole.eu
    flipped = tmp_path / "flipped.json"
    flipped.write_text(json.dumps(bundle))
    witnesses = inspect(tmp_path, flipped, [{"url": ALPHA3, "api": "tiles", "witness_policy": STAGING_POLICY}])[
        "witnesses"
    ]
    assert (witnesses["invalid"], [c["name"] for c in witnesses["cosigners"]]) == (["mullvad"], ["geomys", "google"])


def test_the_log_is_matched_by_origin_through_a_mirror(tmp_path: Path) -> None:
    mirror = {"url": "https://mirror.example", "origin": "log2025-alpha3.rekor.sigstage.dev"}
    report = inspect(tmp_path, HAPPY_PATH, [{**mirror, "api": "tiles", "witness_policy": STAGING_POLICY}])
    assert report["witnesses"]["log"] == "https://mirror.example" and report["witnesses"]["quorum_met"] is True


def test_an_unknown_witness_is_ignored_and_the_quorum_missed(tmp_path: Path) -> None:
    alpha1 = {"url": "https://log2025-alpha1.rekor.sigstage.dev", "api": "tiles", "witness_policy": STAGING_POLICY}
    witnesses = inspect(tmp_path, TWO_SIGS, [alpha1])["witnesses"]
    assert (witnesses["quorum_met"], witnesses["cosigners"], witnesses["invalid"]) == (False, [], [])
    assert witnesses["missing"] == ["geomys", "mullvad", "google"]


def test_null_without_a_policy_for_that_origin(tmp_path: Path) -> None:
    other = {"url": "https://log2025-alpha1.rekor.sigstage.dev", "api": "tiles", "witness_policy": STAGING_POLICY}
    for logs in (None, [{"url": ALPHA3, "api": "tiles"}], [other]):
        assert inspect(tmp_path, HAPPY_PATH, logs)["witnesses"] is None
