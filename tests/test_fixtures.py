"""The repository stands alone: the fixtures the tests read are in it, each with its public source."""

from __future__ import annotations

from tests.paths import FIXTURES, MERKLE, SIGSTORE


def test_every_sigstore_fixture_names_its_source_in_the_readme() -> None:
    readme = (FIXTURES / "README.md").read_text()
    files = sorted(path.name for path in SIGSTORE.iterdir())
    assert files, "no sigstore fixtures"
    unlisted = [name for name in files if f"- `{name}`:" not in readme]
    assert unlisted == []


def test_the_merkle_vectors_are_present_and_attributed() -> None:
    readme = (FIXTURES / "README.md").read_text()
    assert "transparency-dev/merkle" in readme
    for kind in ("inclusion", "consistency"):
        assert len(list((MERKLE / kind).rglob("*.json"))) > 50, kind
