"""rekorwatch: watches the Sigstore transparency logs for signatures made in your name."""

import sys

__version__ = "0.1.0"

# structlog imports rich when it is installed (sigstore requires it) only to draw tracebacks on a
# terminal: 17 MiB and 0.1 s in every process, the daemon and its decode worker alike. Marking it
# absent makes structlog draw them plainly; nothing of ours, nor sigstore's trust updater, needs it.
sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
