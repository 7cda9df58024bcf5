"""rekorwatch: watches the Sigstore transparency logs for signatures made in your name."""

__version__ = "0.1.0"
