"""`check-config` beyond the schema: does the config work with its trust root?

The trust root is loaded as `run` would load it, but offline: a shipped root (`public-good`,
`staging`) is its shipped copy, never refreshed here. Problems are config errors with the YAML path
of the setting to fix: a root file that cannot be read or is malformed (`trust.root`), a signing
config likewise (`trust.signing_config`), a configured log the root has no key for
(`logs[i].url`), a root with no log key or no Fulcio CA at all (nothing could be verified).
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

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
        if root.tlogs and not root.keys_for(log.url, log.origin):
            known = ", ".join(sorted({key.base_url for key in root.tlogs}))
            named = f"origin {log.origin}" if log.origin else log.url
            problems.append(f"logs[{index}].url: {root.source} has no key for {named} (it has keys for {known})")
    for index, ct_log in enumerate(settings.ct_logs or ()):
        if not root.ct_keys_for(ct_log.url, ct_log.origin):
            named = f"origin {ct_log.origin}" if ct_log.origin else ct_log.url
            problems.append(f"ct_logs[{index}].url: {root.source} has no CT log key for {named}")
    return problems + policy_log_problems(settings, root)


def policy_log_problems(settings: Settings, trust: TrustRoot) -> list[str]:
    """A witness policy's `log` lines must name keys the trust root has: a policy written for another
    log (or a stale key) is a configuration error, not something to find out in an incident."""
    known = {_canonical_spki(key.spki_der) for key in (*trust.tlogs, *trust.ctlogs)}
    problems = []
    for position, log_settings in enumerate(settings.logs or ()):
        policy = log_settings.parsed_witness_policy
        for policy_log in policy.logs if policy else ():
            if policy_log.spki_der not in known:
                problems.append(
                    f"logs[{position}].witness_policy: the log key of {policy_log.origin} is not in the trust root"
                )
    return problems


def _canonical_spki(spki_der: bytes) -> bytes:
    try:
        key = load_der_public_key(spki_der)
    except (ValueError, UnsupportedAlgorithm):
        return spki_der
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
