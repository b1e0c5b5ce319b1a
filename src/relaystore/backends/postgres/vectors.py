"""Native vector search for the PostgreSQL item face, with pgvector when the database has it.

Every put also writes its vectors to ``{schema}.item_vectors`` (one ``real[]`` row per vector),
with or without pgvector, so the table needs no extension and a database gains the native
search the day ``CREATE EXTENSION vector`` runs there. A foreign key deletes an item's vectors
with the item (delete, sweep), and a trigger clears them when a put replaces an item that had
some, before the put writes its own.

Detection: at the item face's setup, ``pg_extension`` says whether ``vector`` is installed in
this database (and in which schema). If so, a search ranks in SQL with pgvector's cosine
distance operator ``<=>`` over ``item_vectors`` joined with ``items``, the namespace range,
expiry and filters in the same query: exact (no approximate index: results match
:mod:`relaystore.stores.vectors`, up to float32 rounding), scores ``1 - distance``. Without it,
the numpy reference runs. Creating the extension needs privileges relaystore never assumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from psycopg import sql

from relaystore.backends import _vector_sql
from relaystore.backends.postgres.database import Conn
from relaystore.stores.items import ItemWrite, unpack_vectors

MIGRATION: list[str] = [
    """CREATE TABLE {s}.item_vectors (
        ns TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        dims INTEGER NOT NULL,
        embedding REAL[] NOT NULL,
        PRIMARY KEY (ns, key, name),
        FOREIGN KEY (ns, key) REFERENCES {s}.items (ns, key) ON DELETE CASCADE)""",
    """CREATE FUNCTION {s}.item_vectors_clear() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM {s}.item_vectors WHERE ns = OLD.ns AND key = OLD.key;
            RETURN NULL;
        END $$""",
    """CREATE TRIGGER item_vectors_replaced AFTER UPDATE OF vectors ON {s}.items
        FOR EACH ROW WHEN (OLD.vectors IS NOT NULL) EXECUTE FUNCTION {s}.item_vectors_clear()""",
    # Items written before this table existed get their vectors from :func:`backfill`.
]
MAX_DIMS = 16_000  # pgvector's limit for the vector type: longer queries take the numpy path
INSERT = "INSERT INTO {s}.item_vectors (ns, key, name, dims, embedding) VALUES (%s, %s, %s, %s, %s)"
EXTENSION = (
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
    "WHERE e.extname = 'vector'"
)


async def has_table(conn: Conn, schema: str) -> bool:
    """Whether ``schema.item_vectors`` exists (before migration 2 it does not)."""
    cur = await conn.execute(
        "SELECT to_regclass(%s)", (sql.Identifier(schema, "item_vectors").as_string(conn),)
    )
    row = await cur.fetchone()
    return row is not None and row[0] is not None


async def backfill(conn: Conn, template: Callable[[str], sql.Composed]) -> None:
    """Copy the vectors of items written before ``item_vectors`` existed (SQL cannot read the
    packed column, so Python does)."""
    cur = await conn.execute(template("SELECT ns, key, vectors FROM {s}.items WHERE vectors IS NOT NULL"))
    rows = [
        (ns, key, name, len(v), list(v))
        for ns, key, packed in await cur.fetchall()
        for name, v in unpack_vectors(bytes(packed)).items()
    ]
    if rows:
        async with conn.cursor() as put:
            await put.executemany(template(INSERT), rows)


def vector_rows(puts: Sequence[ItemWrite]) -> list[tuple[str, str, str, int, Any]]:
    """The ``item_vectors`` rows of ``puts`` (``real[]`` from a list of floats)."""
    return _vector_sql.vector_rows(puts, list)


_ITEM = "i.ns, i.key, i.value::text, i.created_at, i.updated_at, i.expires_at, i.ttl, NULL"


def nearest_queries(
    scope: tuple[str, list[Any]], query: list[float], limit: int, offset: int
) -> tuple[tuple[str, list[Any]], tuple[str, list[Any]], tuple[str, list[Any]]]:
    """The three queries of a page: ``(ranked page, count of scored items, unscored items)``,
    templates with ``{s}`` (our schema) and ``{vs}`` (pgvector's) to fill (:func:`compose`).

    The unscored query takes ``[offset into the unscored, limit]`` appended by the caller (see
    :func:`relaystore.stores.vectors.page`). ``scope`` is :func:`.._vector_sql.scope`'s.
    """
    where, params = scope
    dims = len(query)
    literal = "[" + ",".join(repr(x) for x in query) + "]"
    # NaN (a zero vector) scores 0, as in the numpy reference.
    distance = "v.embedding::{vs}.vector OPERATOR({vs}.<=>) %s::{vs}.vector"
    ranked = (
        "WITH ranked AS ("
        f" SELECT i.ns AS ns, i.key AS key, i.updated_at AS u,"
        f" MIN(COALESCE(NULLIF({distance}, 'NaN'::float8), 1.0)) AS d"
        " FROM {s}.item_vectors v JOIN {s}.items i ON i.ns = v.ns AND i.key = v.key"
        f" WHERE v.dims = %s AND {where} GROUP BY i.ns, i.key, i.updated_at"
        " ORDER BY d, u DESC, ns, key LIMIT %s OFFSET %s)"
        f" SELECT {_ITEM}, 1.0 - r.d FROM ranked r JOIN {{s}}.items i ON i.ns = r.ns AND i.key = r.key"
        " ORDER BY r.d, r.u DESC, r.ns, r.key"
    )
    # Both shaped so that no plan depends on item_vectors' statistics (a fresh table has none, and
    # an anti-join planned for 12 rows meets thousands): the count groups the same join as the
    # ranking; the unscored test is a per-row index probe, skipped for items with no vectors.
    count = (
        "SELECT COUNT(*) FROM (SELECT 1 FROM {s}.item_vectors v JOIN {s}.items i"
        f" ON i.ns = v.ns AND i.key = v.key WHERE v.dims = %s AND {where} GROUP BY i.ns, i.key) AS scored"
    )
    no_vector = (
        "(i.vectors IS NULL OR NOT EXISTS (SELECT 1 FROM {s}.item_vectors v"
        " WHERE v.ns = i.ns AND v.key = i.key AND v.dims = %s))"
    )
    unscored = (
        f"SELECT {_ITEM} FROM {{s}}.items i WHERE {where} AND {no_vector} "
        "ORDER BY i.updated_at DESC, i.ns, i.key OFFSET %s LIMIT %s"
    )
    return (
        (ranked, [literal, dims, *params, limit, offset]),
        (count, [dims, *params]),
        (unscored, [*params, dims]),
    )


def compose(template: str, schema: str, extension_schema: str) -> sql.Composed:
    """``template`` with ``{s}`` and ``{vs}`` replaced by the quoted schemas."""
    return sql.SQL(template).format(s=sql.Identifier(schema), vs=sql.Identifier(extension_schema))
