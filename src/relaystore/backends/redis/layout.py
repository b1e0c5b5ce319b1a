"""Key names: NeMo Relay's adaptive layout (:class:`AdaptiveKeys`), and the id encoding of
relaystore's own checkpoint, output, blob and item keys.

Adaptive state uses NeMo Relay's RedisBackend key layout and JSON, so both read each other's data:
``{prefix}runs:{agent}:{run_id}``, ``{prefix}runs_index:{agent}``, ``{prefix}plan:{agent}``, … As
in NeMo Relay, agent ids and learning keys appear raw in key names (``:`` and ``/`` included), so a
prefix must not be a prefix of another tenant's prefix. One key is ours: ``{prefix}runs_trimmed:
{agent}`` counts pruned runs so that list cursors survive ``prune_runs``. Anything that speaks this
layout (the store, a RESP listener) builds its names here. See docs/backends/redis.md.

Checkpoints and outputs use our own layout under ``{prefix}rs:``: ids in key names are base64url
encoded (:func:`encode`), so no id can collide or move a key to another cluster slot.
"""

from __future__ import annotations

import base64
import hashlib

DEFAULT_PREFIX = "nemo_relay:"
"""NeMo Relay's default ``key_prefix``."""


def encode(value: str) -> str:
    """Id as a key-name part: base64url has no ``:``, ``{`` or ``}``, and is reversible."""
    return base64.urlsafe_b64encode(value.encode()).rstrip(b"=").decode()


def slot_tag(value: str) -> str:
    """Cluster hash tag for an agent or learning key (only the slot depends on it)."""
    return "{" + hashlib.sha1(value.encode()).hexdigest()[:16] + "}"


def glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN ``MATCH`` pattern."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


class AdaptiveKeys:
    """NeMo Relay's key names, with a per-owner hash tag in cluster mode.

    Plain layout: ``{prefix}{family}:{owner}{suffix}``. Cluster layout: ``{prefix}{<16 hex of
    SHA-1(owner)>}{family}:{owner}{suffix}``, so a run, its index and its counter share a slot.
    NeMo Relay compatibility therefore requires the plain layout: NeMo Relay itself cannot run on
    a cluster (its MULTI spans ``runs:`` and ``runs_index:``, which hash to different slots, and
    fails with CROSSSLOT), and it would not find tagged keys.

    Families: ``runs`` (``:{run_id}`` suffix), ``runs_index``, ``runs_trimmed`` (ours), ``plan``,
    ``trie``, ``accumulators``, ``acg_observations``, ``acg_stability``.
    """

    def __init__(self, prefix: str, cluster: bool) -> None:
        self.prefix = prefix
        self.cluster = cluster

    def key(self, family: str, owner: str, suffix: str = "") -> str:
        """``{prefix}[{tag}]{family}:{owner}{suffix}``, e.g. family ``plan`` or ``runs_index``."""
        tag = slot_tag(owner) if self.cluster else ""
        return f"{self.prefix}{tag}{family}:{owner}{suffix}"

    def run(self, agent_id: str, run_id: str) -> str:
        """The key of one run record: ``{prefix}[{tag}]runs:{agent_id}:{run_id}``."""
        return self.key("runs", agent_id, ":" + run_id)

    def pattern(self, family: str) -> str:
        """A SCAN ``MATCH`` pattern for every key of ``family`` under this prefix."""
        tag = "{*}" if self.cluster else ""
        return glob_escape(self.prefix) + glob_escape(tag).replace("\\*", "*") + f"{family}:*"

    def owner_of(self, key: str, family: str) -> str | None:
        """The owner named by a scanned key of ``family``, or None if the key is not ours."""
        rest = key[len(self.prefix) :]
        tag = ""
        if self.cluster:
            tag, _, rest = rest.partition("}")
            tag += "}"
        if not rest.startswith(family + ":"):
            return None
        owner = rest[len(family) + 1 :]
        if self.cluster and tag != slot_tag(owner):
            return None
        return owner
