"""A local Rekor-compatible log and Fulcio-like CA, for tests, the demo and benchmarks.

ca.py         the CA and the identity builders (Codefresh, GitHub Actions, email)
entries.py    canonical Rekor entry bodies (hashedrekord, dsse, intoto, hashedrekord v0.0.2)
log.py        the sharded RFC 6962 log: proofs, checkpoints, signed entry timestamps
synthetic.py  random watched and unwatched signings, and `populate` for large logs
trustroot.py  trusted_root.json and signing_config.json for the running log
witnesses.py  three Ed25519 witnesses cosigning the served checkpoints, and their policy
distributor.py  a transparency-dev distributor of the honest, cosigned checkpoints
split.py      the split view: the same log, forked on a second port
server.py     the Rekor v1 REST API, the /sim/ control endpoints, `start_simulator`

It imports nothing of the daemon beyond the hashing and signing primitives of monitor.tlog.
"""
