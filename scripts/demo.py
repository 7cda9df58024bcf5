"""`make demo`: rekorwatch at work in a minute, offline.

Starts the simulator (a local Rekor log with its own Fulcio-like CA and background traffic) and the
daemon against it, then signs as a few Codefresh pipelines: one allowed, one renamed, one the
account does not allow, an impersonator borrowing the account's name, and a forged certificate.
It shows what a user looks at: the alerts, the signing history, the log status and the metrics.

    .venv/bin/python scripts/demo.py [--keep]     (--keep: leave both running until Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = str(Path(sys.executable).with_name("rekorwatch"))
ACCOUNT = {"account_id": "628a80b693a15c0f9c13ab75", "account_name": "acme"}
ALLOWED = {**ACCOUNT, "pipeline_id": "6612ad6384ef42f18019b7e9", "pipeline_name": "shop/release"}
SIGNINGS = [
    ("an allowed pipeline", "codefresh", ALLOWED),
    ("the allowed pipeline, renamed", "codefresh", {**ALLOWED, "pipeline_name": "shop/release-v2"}),
    (
        "a pipeline the account does not allow",
        "codefresh",
        {**ACCOUNT, "pipeline_id": "65e6d5551e47e5bc243ca93f", "pipeline_name": "shop/debug"},
    ),
    (
        "an impersonator using the account's name",
        "codefresh",
        {**ALLOWED, "account_id": "77aa80b693a15c0f9c13ab99", "account_name": "ACME"},
    ),
    ("a certificate from a CA that is not Fulcio", "forged", ALLOWED),
]


def config_text(directory: Path, log_url: str, api_port: int) -> str:
    return f"""database: sqlite+aiosqlite:///{directory / "demo.db"}
trust: {{root: {directory / "trusted_root.json"}, refresh: false}}
logs: [{{url: "{log_url}", api: v1, start: 0}}]
poll_interval: 1s
watch:
  issuers: [https://oidc.codefresh.io]
  codefresh:
    - account_id: {ACCOUNT["account_id"]}
      account_name: {ACCOUNT["account_name"]}
      pipelines: [{{id: {ALLOWED["pipeline_id"]}, name: {ALLOWED["pipeline_name"]}}}]
alerts:
  - type: log
    min_severity: info
server: {{listen: "127.0.0.1:{api_port}"}}
"""


def start_simulator(directory: Path) -> tuple[subprocess.Popen[str], str]:
    command = [BIN, "simulate", "--listen", "127.0.0.1:0", "--dir", str(directory), "--rate", "20"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"simulator at (http://\S+)", line)
        if match:
            return process, match.group(1)
    raise SystemExit("the simulator did not start")


def post(url: str, payload: object) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def wait_until_ready(api: str) -> None:
    for _ in range(100):
        try:
            get(f"{api}/readyz")
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the daemon did not become ready")


def show(title: str, *args: str) -> None:
    print(f"\n=== {title}: rekorwatch {' '.join(args)}")
    print(subprocess.run([BIN, *args], capture_output=True, text=True, check=False).stdout.rstrip())


def next_steps(config: Path, api: str, keep: bool) -> str:
    """Commands that still work when the demo is over: the database stays in its directory."""
    lines = [
        "\nLook again (the database stays):",
        f"  {BIN} history -c {config} --verdict impersonation --verdict unexpected_pipeline",
        f"  {BIN} history -c {config} --since 1h --format csv",
        f"  {BIN} alerts -c {config} --format json",
    ]
    if keep:
        lines.append(f"  curl {api}/api/v1/signings?verdict=impersonation    (while the demo runs)")
    else:
        lines.append(f"  {sys.executable} scripts/demo.py --keep    (keeps the log and the daemon running: the API)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the simulator and the daemon running")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="rekorwatch-demo-"))
    simulator, log_url = start_simulator(directory)
    api_port = 9464
    config = directory / "rekorwatch.yaml"
    config.write_text(config_text(directory, log_url, api_port))
    daemon = subprocess.Popen([BIN, "run", "-c", str(config)], stderr=(directory / "daemon.log").open("w"))
    api = f"http://127.0.0.1:{api_port}"
    try:
        print(f"simulated Rekor log: {log_url} (20 unrelated signings/s)")
        print(f"daemon: {api} (log: {directory / 'daemon.log'})")
        wait_until_ready(api)
        for what, kind, identity in SIGNINGS:
            path = "forged" if kind == "forged" else "append"
            body = identity if kind == "forged" else {"codefresh": [identity]}
            post(f"{log_url}/sim/{path}", body)
            print(f"signed: {what}")
        time.sleep(4)  # a few poll intervals
        show("alerts raised", "alerts", "-c", str(config))
        show("signing history", "history", "-c", str(config), "--limit", "10")
        show("logs", "status", "-c", str(config))
        metrics = [line for line in get(f"{api}/metrics").splitlines() if line.startswith("rekorwatch_")]
        print(f"\n=== metrics ({api}/metrics), a few of them:")
        shown = ("signings_total", "lag_entries", "alerts_total")
        print("\n".join(line for line in metrics if any(name in line for name in shown)))
        print(next_steps(config, api, args.keep))
        if args.keep:
            print("Ctrl-C stops the demo.")
            daemon.wait()
    except KeyboardInterrupt:
        pass
    finally:
        daemon.terminate()
        simulator.terminate()
        daemon.wait()
        simulator.wait()


if __name__ == "__main__":
    main()
