"""The inspector over plain HTTP: every page on every backend, and its security rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relaystore.server.tokens import issue_download_token, store_id, unverified_claims
from relaystore.server.ui.routes import PAGES, SECURITY_HEADERS
from tests.ui.conftest import ADMIN, SIGNING_KEY, Inspector

FRAGMENTS = ["overview", "threads", "thread", "diff", "outputs", "blob", "adaptive", "trie", "memory"]


def pages(inspector: Inspector) -> dict[str, dict[str, Any]]:
    """Each fragment with the parameters that make it show seeded data."""
    s = inspector.seeded
    return {
        "overview": {},
        "threads": {"q": "support-chat"},
        "thread": {"id": s.thread},
        "diff": {"id": s.thread, "a": "", "b": ""},  # filled by the test from the timeline
        "outputs": {"task": s.task, "ref": s.writer_ref},
        "blob": {"ref": s.image_ref},
        "adaptive": {"agent": s.agent},
        "trie": {"agent": s.agent, "path": '["planner"]'},
        "memory": {"ns": '["users"]', "q": "tea"},
    }


def checkpoint_ids(inspector: Inspector, thread: str) -> list[str]:
    page = inspector.get("/ui/f/thread", id=thread)
    return [part.split('"', 1)[0] for part in page.text.split('name="b" value="')[1:]]


def test_every_page_on_every_backend(any_inspector: Inspector) -> None:
    s = any_inspector.seeded
    params = pages(any_inspector)
    newest, *_, oldest = checkpoint_ids(any_inspector, s.thread)
    params["diff"].update(a=oldest, b=newest)
    expected = {
        "overview": "Recent activity",
        "threads": s.thread,
        "thread": "answer",
        "diff": "$.messages",
        "outputs": "Lineage of writer",
        "adaptive": "fanout:sha256:98257",
        "trie": "call 1",
        "memory": "likes tea",
    }
    for name, query in params.items():
        answer = any_inspector.get(f"/ui/f/{name}", **query)
        assert answer.status_code == 200, (name, answer.text)
        if name == "blob":
            assert answer.content.startswith(b"\x89PNG") and answer.headers["content-type"] == "image/png"
        else:
            assert expected[name] in answer.text, name
    graph = any_inspector.get("/ui/f/thread", id=s.graph_thread + "\x1f")
    assert "Channel values" in graph.text and "thought 1" in graph.text and "acted" in graph.text
    nested = any_inspector.get("/ui/f/thread", id=s.nested_thread + "\x1f")
    assert "Namespaces:" in nested.text and ">outer</a>" in nested.text
    subgraph = any_inspector.get("/ui/f/thread", id=s.nested_thread + "\x1fouter")
    assert "from the subgraph" in subgraph.text and "namespace “outer”" in subgraph.text


def test_shell_and_static_need_no_token_and_hold_no_data(sqlite_inspector: Inspector) -> None:
    for page in ("/ui", *(f"/ui/{p}" for p in PAGES)):
        shell = sqlite_inspector.get(page, token=None)
        assert shell.status_code == 200 and sqlite_inspector.seeded.thread not in shell.text
        assert 'id="login-form"' in shell.text and "<script>" not in shell.text  # no inline script
    assert (
        sqlite_inspector.get("/ui/static/ui.js", token=None)
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert sqlite_inspector.get("/ui/static/../app.py", token=None).status_code == 404
    assert sqlite_inspector.get("/ui/nope", token=None).status_code == 404


@pytest.mark.parametrize("name", FRAGMENTS)
def test_every_fragment_needs_a_valid_token(sqlite_inspector: Inspector, name: str) -> None:
    query = pages(sqlite_inspector)[name]
    for token in (None, "wrong-token-" + "x" * 32):
        answer = sqlite_inspector.get(f"/ui/f/{name}", token=token, **query)
        assert answer.status_code == 401 and answer.json()["error"] == "Unauthorized"
        assert sqlite_inspector.seeded.task not in answer.text
    # the token is never read from the URL, where access logs and history would keep it
    in_query = sqlite_inspector.client.get(f"/ui/f/{name}", params={**query, "token": ADMIN})
    assert in_query.status_code == 401


def test_security_headers_on_every_answer(sqlite_inspector: Inspector) -> None:
    answers = [
        sqlite_inspector.get("/ui", token=None),
        sqlite_inspector.get("/ui/static/ui.css", token=None),
        sqlite_inspector.get("/ui/f/overview"),
        sqlite_inspector.get("/ui/f/overview", token=None),  # 401
        sqlite_inspector.get("/ui/f/thread", id="no-such-thread", cp="x"),  # 404
        sqlite_inspector.get("/ui/f/nothing"),  # 404
    ]
    for answer in answers:
        for header, value in SECURITY_HEADERS.items():
            assert answer.headers[header] == value, (answer.url, header)
    assert "script-src 'self'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]
    blob = sqlite_inspector.get("/ui/f/blob", ref=sqlite_inspector.seeded.image_ref)
    assert blob.headers["content-security-policy"] == "sandbox; default-src 'none'"  # blob_rules' own
    assert blob.headers["x-frame-options"] == "DENY" and blob.headers["x-content-type-options"] == "nosniff"


def test_agent_token_sees_only_its_scope(sqlite_inspector: Inspector) -> None:
    s = sqlite_inspector.seeded
    agent = sqlite_inspector.agent_token()
    listing = sqlite_inspector.get("/ui/f/outputs", token=agent)
    assert listing.status_code == 200 and s.task in listing.text and "other-task" not in listing.text
    assert "secret" not in listing.text
    assert sqlite_inspector.get("/ui/f/outputs", token=agent, task="other-task").status_code == 403
    lineage = sqlite_inspector.get("/ui/f/outputs", token=agent, ref=s.writer_ref)
    assert lineage.status_code == 200 and "Lineage of writer" in lineage.text
    for name in ("threads", "thread", "diff", "adaptive", "trie", "memory"):
        answer = sqlite_inspector.get(f"/ui/f/{name}", token=agent, **pages(sqlite_inspector)[name])
        assert answer.status_code == 403, name
    overview = sqlite_inspector.get("/ui/f/overview", token=agent)
    assert (
        overview.status_code == 200
        and "Recent activity" not in overview.text
        and s.thread not in overview.text
    )
    assert "ui.db" not in overview.text and "checkpoints" not in overview.text  # no store-wide facts

    stranger = sqlite_inspector.agent_token(task="other-task")
    assert sqlite_inspector.get("/ui/f/outputs", token=stranger, ref=s.writer_ref).status_code == 403
    assert sqlite_inspector.get("/ui/f/blob", token=stranger, ref=s.image_ref).status_code == 403
    handed = sqlite_inspector.agent_token(task="other-task", reads=(s.image_ref,))
    assert sqlite_inspector.get("/ui/f/blob", token=handed, ref=s.image_ref).status_code == 200


def test_memory_and_download_tokens(sqlite_inspector: Inspector) -> None:
    alice = sqlite_inspector.memory_token(("users", "alice"))
    page = sqlite_inspector.get("/ui/f/memory", token=alice)
    assert page.status_code == 200 and "likes tea" in page.text and "bob" not in page.text
    bob = sqlite_inspector.get("/ui/f/memory", token=alice, ns=json.dumps(["users", "bob"]))
    assert bob.status_code == 403
    assert sqlite_inspector.get("/ui/f/outputs", token=alice).status_code == 403
    download = issue_download_token(
        SIGNING_KEY, sha256="0" * 64, audience=store_id(sqlite_inspector.url), ttl=60
    )
    assert sqlite_inspector.get("/ui/f/overview", token=download).status_code == 403


def test_bad_input_is_a_clear_4xx(sqlite_inspector: Inspector) -> None:
    s = sqlite_inspector.seeded
    cases = [
        ("/ui/f/thread", {}, 422),
        ("/ui/f/thread", {"id": s.thread, "cp": "nope"}, 404),
        ("/ui/f/trie", {"agent": s.agent, "path": "not json"}, 422),
        ("/ui/f/trie", {"agent": s.agent, "path": '["nowhere"]'}, 404),
        ("/ui/f/memory", {"ns": "{"}, 422),
        ("/ui/f/memory", {"filter": "[1]"}, 422),
        ("/ui/f/outputs", {"attempt": "x", "task": s.task}, 422),
        ("/ui/f/outputs", {"ref": "out-" + "0" * 24}, 404),
        ("/ui/f/blob", {"ref": s.writer_ref}, 422),  # an inline output carries no blob
    ]
    for path, query, status in cases:
        answer = sqlite_inspector.get(path, **query)
        assert answer.status_code == status, (path, query, answer.text)
        assert set(answer.json()) >= {"error", "detail"}


def test_revoked_agent_token_is_refused(sqlite_inspector: Inspector) -> None:
    agent = sqlite_inspector.agent_token()  # (not used before: a server caches a "not revoked")
    revoked = sqlite_inspector.client.post(
        "/v1/tokens/revoke",
        json={"jti": unverified_claims(agent)["jti"]},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert revoked.status_code in (200, 204), revoked.text
    assert sqlite_inspector.get("/ui/f/outputs", token=agent).status_code == 401


def test_a_tenants_inspector_links_under_its_prefix(tmp_path: Any) -> None:
    from starlette.testclient import TestClient

    from relaystore.server.app import create_app

    app = create_app(
        f"sqlite:///{tmp_path / 'main.db'}",
        admin_token=ADMIN,
        signing_key=SIGNING_KEY,
        tenant_url=f"sqlite:///{tmp_path}/{{tenant}}.db",
    )
    with TestClient(app) as client:
        shell = client.get("/t/acme/ui")
        assert shell.status_code == 200 and 'data-base="/t/acme"' in shell.text
        assert "/t/acme/ui/static/ui.js" in shell.text
        assert client.get("/t/Bad%22Name/ui").status_code == 404
        overview = client.get("/t/acme/ui/f/overview", headers={"Authorization": f"Bearer {ADMIN}"})
        assert overview.status_code == 200 and "acme" in overview.text
