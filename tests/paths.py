"""Where the tests find their real public fixtures: tests/fixtures/, in the repository itself (a clone
has everything it needs). Each file's public source is listed in tests/fixtures/README.md."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SIGSTORE = FIXTURES / "sigstore"
"""Sigstore bundles, log entries, trust roots and signing configs, byte for byte as published."""
MERKLE = FIXTURES / "merkle"
"""transparency-dev/merkle's RFC 6962 inclusion and consistency proof vectors."""
