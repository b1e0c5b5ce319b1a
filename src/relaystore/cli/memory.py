"""``relaystore memory ls|get|search|put|rm``: LangGraph long-term memory (the item face).

A namespace is written with dots, ``users.u1.memories`` (LangGraph forbids dots inside labels,
so the spelling is unambiguous); an empty one (``""``) is the whole store. Values are JSON
objects; ``--ttl`` is in minutes, as LangGraph's. Work goes through ``store.items``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

import relaystore
from relaystore.cli.app import (
    DEFAULT_URL,
    JsonOption,
    UrlOption,
    app,
    console,
    open_existing,
    print_json,
    run,
    sub_app,
)
from relaystore.errors import InvalidInput, NotFound
from relaystore.stores.items import Namespace, StoredItem, compile_filter

memory = sub_app("LangGraph long-term memory: namespaces, items, search.")
app.add_typer(memory, name="memory")

NamespaceArg = Annotated[str, typer.Argument(help="Namespace, labels joined by dots: users.u1.memories.")]
KeyArg = Annotated[str, typer.Argument(help="Item key.")]


def parse_namespace(text: str) -> Namespace:
    return tuple(text.split(".")) if text else ()


def dotted(namespace: Namespace) -> str:
    return ".".join(namespace)


def when(seconds: float | None) -> str:
    return "–" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def item_json(item: StoredItem) -> dict[str, Any]:
    return {
        "namespace": list(item.namespace),
        "key": item.key,
        "value": item.value,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "expires_at": item.expires_at,
    }


def namespace_tree(root: Namespace, counts: dict[Namespace, int]) -> Tree:
    """The namespaces as a tree under ``root``, each holding namespace with its item count."""
    tree = Tree(Text(dotted(root) or "(all namespaces)", style="bold"))
    nodes: dict[Namespace, Tree] = {root: tree}
    for namespace in sorted(counts):
        for depth in range(len(root) + 1, len(namespace) + 1):
            path = namespace[:depth]
            if path not in nodes:
                label = Text(path[-1])
                if path in counts:
                    label.append(f"  {counts[path]} item{'s' * (counts[path] != 1)}", style="dim")
                nodes[path] = nodes[path[:-1]].add(label)
    return tree


@memory.command("ls")
def list_namespaces(
    namespace: Annotated[str, typer.Argument(help="Show only namespaces under this one.")] = "",
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Namespaces holding memories, as a tree, with how many items each holds."""
    prefix = parse_namespace(namespace)

    async def work() -> dict[Namespace, int]:
        async with open_existing(url) as store:
            found = await store.items.list_namespaces(prefix=prefix, limit=2**62)
            return {ns: await store.items.count(ns) - await _below(store, ns, found) for ns in found}

    counts = run(work)
    if as_json:
        print_json({"namespaces": [{"namespace": list(ns), "items": n} for ns, n in counts.items()]})
        return
    console.print(namespace_tree(prefix, counts) if counts else Text("no memories", style="dim"))


async def _below(store: relaystore.Store, namespace: Namespace, every: list[Namespace]) -> int:
    """Items in namespaces strictly below ``namespace`` (a count covers the whole prefix)."""
    deeper = [ns for ns in every if len(ns) > len(namespace) and ns[: len(namespace)] == namespace]
    children = {ns[: len(namespace) + 1] for ns in deeper}
    return sum([await store.items.count(child) for child in children])


@memory.command("get")
def get_item(
    namespace: NamespaceArg, key: KeyArg, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False
) -> None:
    """One memory: its value and times."""
    ns = parse_namespace(namespace)

    async def work() -> StoredItem:
        async with open_existing(url) as store:
            found = await store.items.get(ns, key)
        if found is None:
            raise NotFound(f"no memory {key!r} in {namespace!r}; list them with `relaystore memory search`")
        return found

    item = run(work)
    if as_json:
        print_json(item_json(item))
        return
    console.print(Text(f"{dotted(item.namespace)} / {item.key}", style="bold"))
    console.print(Text(f"created {when(item.created_at)}  updated {when(item.updated_at)}", style="dim"))
    if item.expires_at is not None:
        console.print(Text(f"expires {when(item.expires_at)}", style="dim"))
    console.print_json(json.dumps(item.value, ensure_ascii=False))


@memory.command("search")
def search_items(
    namespace: Annotated[str, typer.Argument(help="Search under this namespace (default: all).")] = "",
    filter: Annotated[
        str | None, typer.Option("--filter", help='JSON filter: \'{"n": {"$gt": 5}}\'.')
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many items.")] = 20,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many first.")] = 0,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Memories under a namespace matching a filter, most recently updated first."""
    prefix = parse_namespace(namespace)

    async def work() -> list[StoredItem]:
        conditions = compile_filter(_json_object(filter, "--filter")) if filter else []
        async with open_existing(url) as store:
            return await store.items.search(prefix, conditions=conditions, limit=limit, offset=offset)

    items = run(work)
    if as_json:
        print_json({"items": [item_json(i) for i in items]})
        return
    table = Table(box=box.SIMPLE)
    for column in ("namespace", "key", "updated", "value"):
        table.add_column(column)
    for item in items:
        value = json.dumps(item.value, ensure_ascii=False)
        table.add_row(
            *(Text(c) for c in (dotted(item.namespace), item.key, when(item.updated_at), value[:60]))
        )
    console.print(table if items else Text("no memories match", style="dim"))


@memory.command("put")
def put_item(
    namespace: NamespaceArg,
    key: KeyArg,
    value: Annotated[str, typer.Argument(help='The value, a JSON object: \'{"fact": "likes tea"}\'.')],
    ttl: Annotated[float | None, typer.Option("--ttl", help="Expire after this many minutes.")] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Store (or replace) one memory."""
    ns = parse_namespace(namespace)

    async def work() -> None:
        document = _json_object(value, "VALUE")
        async with relaystore.connect(url) as store:
            await store.items.put(ns, key, document, ttl=None if ttl is None else ttl * 60)

    run(work)
    console.print(Text(f"stored {namespace} / {key}"))


@memory.command("rm")
def remove_item(namespace: NamespaceArg, key: KeyArg, url: UrlOption = DEFAULT_URL) -> None:
    """Delete one memory (deleting a missing one does nothing)."""
    ns = parse_namespace(namespace)

    async def work() -> bool:
        async with relaystore.connect(url) as store:
            existed = await store.items.get(ns, key) is not None
            await store.items.delete(ns, key)
            return existed

    existed = run(work)
    console.print(Text(f"deleted {namespace} / {key}" if existed else f"no memory {key!r} in {namespace!r}"))


def _json_object(text: str | None, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "")
    except ValueError:
        raise InvalidInput(f'{what} must be a JSON object, e.g. \'{{"fact": "likes tea"}}\'') from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, got {type(value).__name__}")
    return value
