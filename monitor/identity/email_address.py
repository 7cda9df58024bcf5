"""Email identities (Fulcio's `email` issuers: Google, GitHub/Microsoft via sigstore's dex, ...).

The account is the address; its id, when Fulcio wrote 1.24, the token's raw `sub`.
"""

from __future__ import annotations

from monitor.identity.fulcio import FulcioCertificate
from monitor.identity.signing import SigningIdentity


def identify_email(cert: FulcioCertificate) -> SigningIdentity:
    return SigningIdentity(
        provider="email",
        issuer=cert.issuer,
        identity=cert.identity,
        account_id=cert.extensions.get("token_subject"),
        account_name=cert.identity,
    )
