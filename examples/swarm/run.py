"""A three-agent swarm over a running ``relaystore serve``: planner → researcher (curl) → writer.

    relaystore serve --url sqlite:///./relaystore.db &          # prints where its admin token is
    python examples/swarm/run.py --url http://127.0.0.1:8787

The coordinator holds the admin token (``--admin-token``, ``$RELAYSTORE_ADMIN_TOKEN``, or the
token file of a local server). For each sub-agent it asks the server for a token scoped to that
agent's (task, attempt, producer) that may read only the refs handed to it, spawns the agent with
RELAYSTORE_URL, RELAYSTORE_TOKEN, IN_REFS, TASK_ID, ATTEMPT and PRODUCER, and hands the agent's
output ref to the next one. It ends by printing the lineage tree with ``relaystore lineage``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from pathlib import Path

from relaystore.errors import RelayStoreError
from relaystore.server.tokens import ADMIN_TOKEN_FILE, STATE_DIR_NAME, request_token

HERE = Path(__file__).resolve().parent
RELAYSTORE = str(Path(sys.executable).parent / "relaystore")
# (producer, command, which earlier producers' outputs it gets as IN_REFS)
PIPELINE = [
    ("planner", [sys.executable, str(HERE / "agent.py")], []),
    ("researcher", ["sh", str(HERE / "agent.sh")], ["planner"]),
    ("writer", [sys.executable, str(HERE / "agent.py")], ["planner", "researcher"]),
]


def admin_token(given: str | None, token_file: Path) -> str:
    token = given or os.environ.get("RELAYSTORE_ADMIN_TOKEN")
    if token:
        return token
    if token_file.exists():
        return token_file.read_text().strip()
    sys.exit(
        f"swarm: no admin token in {token_file}: start the server first (make run), "
        "or pass --admin-token / set RELAYSTORE_ADMIN_TOKEN"
    )


def spawn(command: list[str], env: dict[str, str]) -> str:
    """Run one sub-agent to completion and return the output ref it printed last."""
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not done.stdout.strip():
        sys.exit(f"{env['PRODUCER']} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout.split()[-1]


def main() -> None:
    try:
        swarm()
    except RelayStoreError as exc:  # a server that is down or refuses the token: one line, the fix
        sys.exit(f"swarm: {type(exc).__name__}: {exc} (is `make run` serving --url?)")


def swarm() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("RELAYSTORE_URL", "http://127.0.0.1:8787"))
    parser.add_argument("--admin-token", default=None)
    parser.add_argument("--admin-token-file", type=Path, default=Path(STATE_DIR_NAME) / ADMIN_TOKEN_FILE)
    args = parser.parse_args()
    admin = admin_token(args.admin_token, args.admin_token_file)
    task, attempt = f"swarm-{uuid.uuid4().hex[:8]}", 1
    refs: dict[str, str] = {}
    for producer, command, inputs in PIPELINE:
        in_refs = [refs[name] for name in inputs]
        token = request_token(
            args.url, admin, task=task, attempt=attempt, producer=producer, ttl="10m", reads=in_refs
        )
        env = {
            "RELAYSTORE_URL": args.url,
            "RELAYSTORE_TOKEN": token,
            "IN_REFS": " ".join(in_refs),
            "TASK_ID": task,
            "ATTEMPT": str(attempt),
            "PRODUCER": producer,
        }
        refs[producer] = spawn(command, env)
        print(f"{producer:<10} {refs[producer]}  (IN_REFS: {' '.join(in_refs) or '-'})", flush=True)
    # The CLI works over HTTP unchanged: the http backend reads RELAYSTORE_TOKEN.
    subprocess.run(
        [RELAYSTORE, "lineage", refs["planner"], "--url", args.url],
        env={**os.environ, "RELAYSTORE_TOKEN": admin, "COLUMNS": "120"},
        check=True,
    )


if __name__ == "__main__":
    main()
