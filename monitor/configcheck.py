"""`check-config` beyond the schema: does the config work with its trust root?

The trust root is loaded as `run` would load it, but offline: a shipped root (`public-good`,
`staging`) is its shipped copy, never refreshed here. Problems are config errors with the YAML path
of the setting to fix: a root file that cannot be read or is malformed (`trust.root`), a signing
config likewise (`trust.signing_config`), a configured log the root has no key for
(`logs[i].url`), a root with no log key or no Fulcio CA at all (nothing could be verified).
"""

from __future__ import annotations

from monitor.config import Settings
from monitor.trust import SHIPPED_ROOTS, TrustRoot, TrustRootError, load_trust_root


def trust_problems(settings: Settings) -> list[str]:
    """Every problem of the config's trust root, one `path: message` line each; [] when it works."""
    trust = settings.trust
    try:
        root = load_trust_root(trust.root, refresh=False, signing_config=trust.signing_config)
    except TrustRootError as exc:
        return [f"{_blamed_setting(settings, str(exc))}: {exc}"]
    return _coverage_problems(settings, root)


def _blamed_setting(settings: Settings, error: str) -> str:
    signing_config = settings.trust.signing_config
    if signing_config and signing_config not in SHIPPED_ROOTS and error.startswith(f"cannot read {signing_config}"):
        return "trust.signing_config"
    return "trust.root"


def _coverage_problems(settings: Settings, root: TrustRoot) -> list[str]:
    problems = []
    if not root.tlogs:
        problems.append(f"trust.root: {root.source} has no transparency log key: no checkpoint could be verified")
    if not root.fulcio:
        problems.append(f"trust.root: {root.source} has no Fulcio CA: every certificate would be untrusted")
    for index, log in enumerate(settings.logs or ()):
        if root.tlogs and not root.log_keys_for_url(log.url):
            known = ", ".join(sorted({key.base_url for key in root.tlogs}))
            problems.append(f"logs[{index}].url: {root.source} has no key for {log.url} (it has keys for {known})")
    return problems
