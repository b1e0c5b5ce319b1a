"""Blobs of the PostgreSQL backend: content-addressed, stored as numbered 1 MiB chunks.

An upload stages its chunks under the owner ``upload:<id>`` and is recorded in ``blob_uploads``;
committing renames the chunks to the digest in one transaction. Uploads older than
:data:`~relaystore.backends._policy.STALE_UPLOAD_SECONDS` are dropped when a store opens.
"""

from __future__ import annotations

from relaystore.backends._lazy import CreatedOnFirstUse
from relaystore.backends._policy import STALE_UPLOAD_SECONDS
from relaystore.backends.postgres.database import PgDatabase
from relaystore.backends.postgres.faces import create_face, has_table
from relaystore.backends.postgres.paging import after_key
from relaystore.models.outputs import BlobContent
from relaystore.stores.blobs import BlobStore

_DROP_UPLOAD = "DELETE FROM {s}.blob_uploads WHERE upload_id = %s"
_DROP_CHUNKS = "DELETE FROM {s}.blob_chunks WHERE owner = %s"


def _staged(upload_id: str) -> str:
    """The owner of an upload's chunks until it is committed (then they belong to the digest)."""
    return f"upload:{upload_id}"


class PgBlobStore(CreatedOnFirstUse, BlobStore):
    """Blobs in ``blobs`` (digest, size, mime) and ``blob_chunks`` (owner, idx, data)."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def _create_tables(self) -> None:
        await create_face(self._db, "blobs")

    async def _put_chunk(self, upload_id: str, index: int, data: bytes) -> None:
        async with self._db.transaction() as conn:
            if index == 0:
                await conn.execute(
                    self._db.sql("INSERT INTO {s}.blob_uploads (upload_id) VALUES (%s)"), (upload_id,)
                )
            await conn.execute(
                self._db.sql("INSERT INTO {s}.blob_chunks VALUES (%s, %s, %s)"),
                (_staged(upload_id), index, data),
            )

    async def _commit(self, upload_id: str, blob: BlobContent, chunks: int) -> None:
        staged = _staged(upload_id)
        async with self._db.transaction() as conn:
            await self._db.lock(conn, "blob", blob.sha256)  # two uploads of one digest: one wins
            await conn.execute(self._db.sql(_DROP_UPLOAD), (upload_id,))
            inserted = await conn.execute(
                self._db.sql(
                    "INSERT INTO {s}.blobs (sha256, size, mime) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
                ),
                (blob.sha256, blob.size, blob.mime),
            )
            if inserted.rowcount:
                sql_text = "UPDATE {s}.blob_chunks SET owner = %s WHERE owner = %s"
                await conn.execute(self._db.sql(sql_text), (blob.sha256, staged))
            else:
                await conn.execute(self._db.sql(_DROP_CHUNKS), (staged,))

    async def _abort(self, upload_id: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(self._db.sql(_DROP_UPLOAD), (upload_id,))
            await conn.execute(self._db.sql(_DROP_CHUNKS), (_staged(upload_id),))

    async def _stat(self, sha256: str) -> BlobContent | None:
        row = await self._db.one("SELECT size, mime FROM {s}.blobs WHERE sha256 = %s", (sha256,))
        return None if row is None else BlobContent(sha256=sha256, size=row[0], mime=row[1])

    async def _chunk(self, sha256: str, index: int) -> bytes | None:
        row = await self._db.one(
            "SELECT data FROM {s}.blob_chunks WHERE owner = %s AND idx = %s", (sha256, index)
        )
        return None if row is None else bytes(row[0])

    async def _delete(self, sha256: str) -> bool:
        async with self._db.transaction() as conn:
            await conn.execute(self._db.sql(_DROP_CHUNKS), (sha256,))
            deleted = await conn.execute(self._db.sql("DELETE FROM {s}.blobs WHERE sha256 = %s"), (sha256,))
            return deleted.rowcount > 0

    async def _list(self, after: str | None, limit: int | None) -> list[BlobContent]:
        rows = await self._db.all(
            "SELECT sha256, size, mime FROM {s}.blobs WHERE sha256 > %s ORDER BY sha256 LIMIT %s",
            (after_key(after), limit),
        )
        return [BlobContent(sha256=sha, size=size, mime=mime) for sha, size, mime in rows]

    async def drop_stale_uploads(self) -> int:
        """Remove chunks of uploads older than ``STALE_UPLOAD_SECONDS`` (left by a crashed writer)."""
        async with self._db.transaction() as conn:
            if not await has_table(conn, self._db.schema, "blob_uploads"):  # the face was never used
                return 0
            cur = await conn.execute(
                self._db.sql(
                    "DELETE FROM {s}.blob_uploads WHERE started_at < now() - make_interval(secs => %s) "
                    "RETURNING upload_id"
                ),
                (STALE_UPLOAD_SECONDS,),
            )
            stale = [_staged(row[0]) for row in await cur.fetchall()]
            if stale:
                await conn.execute(
                    self._db.sql("DELETE FROM {s}.blob_chunks WHERE owner = ANY(%s)"), (stale,)
                )
            return len(stale)
