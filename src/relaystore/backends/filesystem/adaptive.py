"""Adaptive state of the file backend: runs and documents under ``adaptive/``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from relaystore.backends.filesystem.layout import FileRoot, sorted_after, take
from relaystore.backends.filesystem.names import encode_name, is_sidecar, seq_name, stem_of
from relaystore.errors import Conflict
from relaystore.stores import AdaptiveStore, DocKind
from relaystore.stores.adaptive import AGENT_DOC_KINDS


class FileAdaptiveStore(AdaptiveStore):
    """``adaptive/runs/<agent>/<seq>-<run>.json`` and ``adaptive/<kind>/<key>.json``."""

    def __init__(self, root: FileRoot) -> None:
        self._root = root
        self._runs = root.path / "adaptive" / "runs"
        self._docs = root.path / "adaptive"

    def _doc_path(self, kind: DocKind, key: str) -> Path:
        return self._docs / kind / f"{encode_name(key)}.json"

    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        agent_dir = self._runs / encode_name(agent_id)

        def store_run() -> None:
            stem = encode_name(run_id)
            if any(stem_of(name) == stem for _, name in self._root.seq_files(agent_dir)):
                raise Conflict(f"agent {agent_id!r} already has run {run_id}")
            self._root.remember_key(self._runs, agent_dir.name, agent_id)
            self._root.make_dirs(agent_dir)
            name = f"{seq_name(self._root.next_seq(), stem)}.json"
            self._root.write_file(agent_dir / name, text.encode())

        await self._root.write(store_run)

    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> list[tuple[int, str, str]]:
        agent_dir = self._runs / encode_name(agent_id)

        def list_runs() -> list[tuple[int, str, str]]:
            rows: list[tuple[int, str, str]] = []
            for seq, name in self._root.seq_files(agent_dir):
                if after is not None and seq <= after:
                    continue
                if limit is not None and len(rows) >= limit:
                    break
                raw = self._root.read_bytes(agent_dir / name)
                if raw is not None:  # else deleted since the listing
                    rows.append((seq, str(agent_dir / name), raw.decode("utf-8", errors="replace")))
            return rows

        return await self._root.read(list_runs)

    async def _count_runs(self, agent_id: str) -> int:
        agent_dir = self._runs / encode_name(agent_id)
        return await self._root.read(lambda: len(self._root.seq_files(agent_dir)))

    async def _prune_runs(self, agent_id: str, keep: int) -> int:
        agent_dir = self._runs / encode_name(agent_id)

        def prune() -> int:
            files = self._root.seq_files(agent_dir)
            doomed = files[: max(0, len(files) - keep)]
            for _, name in doomed:
                self._root.remove(agent_dir / name)
            if doomed and len(doomed) == len(files):
                self._root.remove_dir(agent_dir)
                self._root.forget_key(self._runs, agent_dir.name)
            elif doomed:
                self._root.sync_dir(agent_dir)
            return len(doomed)

        return await self._root.write(prune)

    def _run_agents(self) -> list[str]:
        agents = []
        for name in self._root.names(self._runs):
            if is_sidecar(name) or not self._root.seq_files(self._runs / name):
                continue
            key = self._root.key_of(self._runs, name)
            if key is not None:
                agents.append(key)
        return agents

    def _doc_keys(self, kind: DocKind) -> list[str]:
        directory = self._docs / kind
        stems = (n[: -len(".json")] for n in self._root.names(directory) if n.endswith(".json"))
        return [key for stem in stems if (key := self._root.key_of(directory, stem)) is not None]

    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]:
        def list_agents() -> list[str]:
            agents = self._run_agents()
            for kind in AGENT_DOC_KINDS:
                agents += self._doc_keys(kind)
            return take(sorted_after(agents, after), limit)

        return await self._root.read(list_agents)

    async def _get_doc(self, kind: DocKind, key: str) -> str | None:
        path = self._doc_path(kind, key)
        return await self._root.read(lambda: _read_doc(self._root, path))

    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None:
        path = self._doc_path(kind, key)
        await self._root.write(lambda: self._write_doc(path, key, text))

    def _write_doc(self, path: Path, key: str, text: str) -> None:
        self._root.remember_key(path.parent, path.name[: -len(".json")], key)
        self._root.make_dirs(path.parent)
        self._root.write_file(path, text.encode())

    async def _delete_doc(self, kind: DocKind, key: str) -> bool:
        path = self._doc_path(kind, key)

        def delete() -> bool:
            existed = self._root.remove(path)
            self._root.forget_key(path.parent, path.name[: -len(".json")])
            if existed:
                self._root.sync_dir(path.parent)
            return existed

        return await self._root.write(delete)

    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]:
        return await self._root.read(lambda: take(sorted_after(self._doc_keys(kind), after), limit))

    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        path = self._doc_path(kind, key)

        def update() -> str | None:
            current = _read_doc(self._root, path)
            new = apply(current)
            if new is None:
                return current
            self._write_doc(path, key, new)
            return new

        return await self._root.write(update)


def _read_doc(root: FileRoot, path: Path) -> str | None:
    raw = root.read_bytes(path)
    # Undecodable bytes become U+FFFD, so the JSON check upstream reports the record as corrupt.
    return None if raw is None else raw.decode("utf-8", errors="replace")
