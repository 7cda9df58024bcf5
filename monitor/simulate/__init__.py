"""A local Rekor-compatible log and Fulcio-like CA, for tests, the demo and benchmarks.

ca.py         the CA and the identity builders (Codefresh, GitHub Actions, email)
entries.py    canonical Rekor entry bodies (hashedrekord, dsse, intoto, hashedrekord v0.0.2)
log.py        the sharded RFC 6962 log: proofs, checkpoints, signed entry timestamps
synthetic.py  random watched and unwatched signings, and `populate` for large logs
trustroot.py  trusted_root.json and signing_config.json for the running log
server.py     the Rekor v1 REST API, the /sim/ control endpoints, `start_simulator`

It imports nothing of the daemon beyond the hashing and signing primitives of monitor.tlog.
"""
