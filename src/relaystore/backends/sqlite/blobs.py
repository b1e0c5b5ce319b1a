"""Content-addressed blobs of the SQLite backend, stored as numbered 1 MiB chunks."""

from __future__ import annotations

import sqlite3
import time

from relaystore.backends._lazy import CreatedOnFirstUse
from relaystore.backends._policy import STALE_UPLOAD_SECONDS
from relaystore.backends.sqlite.database import SqliteDatabase, few
from relaystore.backends.sqlite.faces import has_table
from relaystore.models.outputs import BlobContent
from relaystore.stores._common import Skipped, or_skipped
from relaystore.stores.blobs import BlobStore, stored_blob

# Staged chunks are owned by "upload:<id>"; committing re-owns them to the digest. Uploads a
# crashed process left behind are dropped after a day (they may belong to a live process before).


class SqliteBlobStore(CreatedOnFirstUse, BlobStore):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def _create_tables(self) -> None:
        await self._db.ensure_face("blobs")

    async def _put_chunk(self, upload_id: str, index: int, data: bytes) -> None:
        def put(conn: sqlite3.Connection) -> None:
            if index == 0:
                conn.execute("INSERT INTO blob_uploads VALUES (?, ?)", (upload_id, time.time()))
            conn.execute("INSERT INTO blob_chunks VALUES (?, ?, ?)", (f"upload:{upload_id}", index, data))

        await self._db.write(put)

    async def _commit(self, upload_id: str, blob: BlobContent, chunks: int) -> None:
        def commit(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM blob_uploads WHERE upload_id = ?", (upload_id,))
            exists = conn.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (blob.sha256,)).fetchone()
            if exists:
                conn.execute("DELETE FROM blob_chunks WHERE owner = ?", (f"upload:{upload_id}",))
                return
            conn.execute(
                "INSERT INTO blobs (sha256, size, mime) VALUES (?,?,?)", (blob.sha256, blob.size, blob.mime)
            )
            conn.execute(
                "UPDATE blob_chunks SET owner = ? WHERE owner = ?", (blob.sha256, f"upload:{upload_id}")
            )

        await self._db.write(commit)

    async def _abort(self, upload_id: str) -> None:
        def abort(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM blob_uploads WHERE upload_id = ?", (upload_id,))
            conn.execute("DELETE FROM blob_chunks WHERE owner = ?", (f"upload:{upload_id}",))

        await self._db.write(abort)

    async def _stat(self, sha256: str) -> BlobContent | None:
        row = await self._db.read(
            lambda c: c.execute("SELECT size, mime FROM blobs WHERE sha256 = ?", (sha256,)).fetchone(),
            inline=True,
        )
        return None if row is None else stored_blob(sha256, row[0], row[1], f"blobs row {sha256}")

    async def _chunk(self, sha256: str, index: int) -> bytes | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT data FROM blob_chunks WHERE owner = ? AND idx = ?", (sha256, index)
            ).fetchone()
        )
        return None if row is None else bytes(row[0])

    async def _delete(self, sha256: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM blob_chunks WHERE owner = ?", (sha256,))
            return conn.execute("DELETE FROM blobs WHERE sha256 = ?", (sha256,)).rowcount > 0

        return await self._db.write(delete)

    async def _list(self, after: str | None, limit: int | None) -> list[BlobContent | Skipped]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT sha256, size, mime FROM blobs WHERE sha256 > ? ORDER BY sha256 LIMIT ?",
                ("" if after is None else after, -1 if limit is None else limit),
            ).fetchall(),
            inline=few(limit),
        )
        return [or_skipped(sha, stored_blob, sha, size, mime, f"blobs row {sha}") for sha, size, mime in rows]

    async def drop_stale_uploads(self) -> int:
        """Remove chunks of uploads started more than a day ago (left by a crashed writer)."""

        def drop(conn: sqlite3.Connection) -> int:
            if not has_table(conn, "blob_uploads"):  # the blob face was never used
                return 0
            cutoff = time.time() - STALE_UPLOAD_SECONDS
            stale = [
                r[0]
                for r in conn.execute("SELECT upload_id FROM blob_uploads WHERE started_at < ?", (cutoff,))
            ]
            for upload_id in stale:
                conn.execute("DELETE FROM blob_chunks WHERE owner = ?", (f"upload:{upload_id}",))
                conn.execute("DELETE FROM blob_uploads WHERE upload_id = ?", (upload_id,))
            return len(stale)

        return await self._db.write(drop)
