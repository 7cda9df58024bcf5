"""Trust roots: shipped public-good/staging, any trusted_root.json path, and the TUF fallback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.trust import TrustRootError, load_trust_root
from tests.paths import SIGSTORE as FIXTURES


def test_public_good_is_shipped_with_v1_and_v2_logs() -> None:
    trust = load_trust_root("public-good", refresh=False)
    assert "shipped" in trust.source
    names = {key.name for key in trust.tlogs}
    assert {"rekor.sigstore.dev", "log2025-1.rekor.sigstore.dev"} <= names
    v1 = trust.log_keys_for_url("https://rekor.sigstore.dev")[0]
    assert v1.log_id.hex().startswith("c0d23d6a")
    assert trust.log_key(v1.log_id) is v1
    services = {(s.url, s.major_api_version) for s in trust.rekor_services}
    assert services == {("https://rekor.sigstore.dev", 1), ("https://log2025-1.rekor.sigstore.dev", 2)}
    assert any(ca.validity.contains(datetime(2024, 3, 19, tzinfo=UTC)) for ca in trust.fulcio)


def test_staging_is_shipped() -> None:
    trust = load_trust_root("staging", refresh=False)
    assert any(key.name == "log2025-alpha1.rekor.sigstage.dev" for key in trust.tlogs)


def test_refresh_without_network_falls_back_to_the_shipped_copy() -> None:
    trust = load_trust_root("public-good", refresh=True)
    assert trust.tlogs and trust.source.startswith("public-good")


def test_a_path_to_a_trusted_root(tmp_path: Path) -> None:
    trust = load_trust_root(str(FIXTURES / "trusted_root.json"))
    assert len(trust.fulcio) >= 2 and trust.rekor_services == ()
    (tmp_path / "trusted_root.json").write_bytes((FIXTURES / "trusted_root.staging.json").read_bytes())
    (tmp_path / "signing_config.json").write_bytes((FIXTURES / "signing_config.v0.2.staging.json").read_bytes())
    staged = load_trust_root(str(tmp_path / "trusted_root.json"))
    assert staged.rekor_services, "a signing_config.json beside the trusted root is read"


@pytest.mark.parametrize("content", ["not json", json.dumps({"tlogs": [{"baseUrl": "x"}]})])
def test_malformed_trust_roots_are_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "trusted_root.json"
    path.write_text(content)
    with pytest.raises(TrustRootError):
        load_trust_root(str(path))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrustRootError):
        load_trust_root(str(tmp_path / "absent.json"))
