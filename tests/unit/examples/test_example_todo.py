"""The todo example: its model over a KV_RW store, and its WSGI app as a client sees it."""

from __future__ import annotations

import html
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from summon import kv
from summon.manifest import load

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "todo"


@pytest.fixture
def modules() -> Iterator[tuple[Any, Any]]:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import tasks
        import web

        yield tasks, web
    finally:
        sys.path.remove(str(EXAMPLE))
        for name in ("tasks", "web", "app"):
            sys.modules.pop(name, None)


class Client:
    """Calls the WSGI app as the runtime's server would."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(
        self, method: str, path: str, body: bytes = b"", kind: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        target, _, query = path.partition("?")
        environ = {
            "REQUEST_METHOD": method, "PATH_INFO": target, "QUERY_STRING": query,
            "CONTENT_TYPE": kind, "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
        }  # fmt: skip
        got: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            got["status"], got["headers"] = int(status.split()[0]), dict(headers)

        data = b"".join(self.app(environ, start_response))
        assert int(got["headers"]["Content-Length"]) == len(data)
        return got["status"], got["headers"], data

    def post_json(self, path: str, doc: object) -> tuple[int, Any]:
        status, _, data = self("POST", path, json.dumps(doc).encode(), "application/json")
        return status, json.loads(data)


@pytest.fixture
def client(modules: tuple[Any, Any]) -> Iterator[tuple[Client, kv.Store]]:
    tasks, web = modules
    store = kv.open_memory()
    yield Client(web.TodoApp(tasks.Tasks(store))), store
    store.close()


def test_the_manifest_declares_its_volume_and_store() -> None:
    m = load(EXAMPLE)
    assert (m.name, str(m.entry), m.volumes, m.stores) == (
        "todo", "app:main", ("/data",), {"todo": "/data/todo"},
    )  # fmt: skip
    readme = (EXAMPLE / "README.md").read_text()
    assert "summon build examples/todo -t todo && summon run todo -v todo:/data" in readme


def test_tasks_added_by_form_and_json_are_listed_by_title(client: tuple[Client, kv.Store]) -> None:
    app, store = client
    status, headers, _ = app("POST", "/tasks", b"title=buy+milk&project=Home&context=shop",
                             "application/x-www-form-urlencoded")  # fmt: skip
    assert (status, headers["Location"]) == (303, "/")
    status, doc = app.post_json("/tasks", {"title": "call <Bob>"})
    assert status == 201 and doc["title"] == "call <Bob>" and doc["commit"] == store.head
    status, headers, page = app("GET", "/")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert b"buy milk" in page and b"call &lt;Bob&gt;" in page and b"<Bob>" not in page
    assert b"Home @shop" in page
    assert [t["title"] for t in json.loads(app("GET", "/tasks")[2])] == ["buy milk", "call <Bob>"]
    assert [c.message for c in store.history()] == ["add: call <Bob>", "add: buy milk"]
    assert json.loads(store.get("projects/home")) == {"name": "Home"}


def test_done_undone_delete_are_commits_with_readable_messages(
    client: tuple[Client, kv.Store],
) -> None:
    app, store = client
    _, task = app.post_json("/tasks", {"title": "milk"})
    assert app.post_json(f"/tasks/{task['id']}/done", {})[0] == 200
    _, _, page = app("GET", "/")
    assert page.index(b"milk") > page.index(b"Done (1)")  # listed among the done ones
    app.post_json(f"/tasks/{task['id']}/undone", {})
    app.post_json(f"/tasks/{task['id']}/delete", {})
    assert [c.message for c in store.history()] == [
        "delete: milk", "not done: milk", "done: milk", "add: milk",
    ]  # fmt: skip
    assert app.post_json(f"/tasks/{task['id']}/done", {})[0] == 404


def test_history_past_states_and_revert(client: tuple[Client, kv.Store]) -> None:
    app, store = client
    _, first = app.post_json("/tasks", {"title": "one"})
    app.post_json("/tasks", {"title": "two"})
    _, _, page = app("GET", "/history")
    assert b"add: two" in page and b"add: one" in page
    history = json.loads(app("GET", "/history?format=json")[2])
    assert [c["message"] for c in history] == ["add: two", "add: one"]
    status, _, then = app("GET", f"/at/{first['commit'][:8]}")
    assert status == 200 and b"one" in then and b"two" not in then
    status, doc = app.post_json(f"/revert/{first['commit'][:8]}", {})
    assert status == 200 and doc["commit"] == store.head
    assert [t["title"] for t in json.loads(app("GET", "/tasks")[2])] == ["one"]
    assert store.history()[0].message == f"revert to {first['commit'][:8]} (add: one)"
    assert len(store.history()) == 3  # history kept


@pytest.mark.parametrize(
    ("method", "path", "body", "kind", "status", "says"),
    [
        ("POST", "/tasks", b'{"title": 5}', "application/json", 400, "title must be text, not int"),
        ("POST", "/tasks", b"{}", "application/json", 400, "title is empty"),
        ("POST", "/tasks", b'{"title": "  "}', "application/json", 400, "title is empty"),
        ("POST", "/tasks", b"[1]", "application/json", 400, "must be a JSON object"),
        ("POST", "/tasks", b"{", "application/json", 400, "not JSON"),
        ("POST", "/tasks", b"title=" + b"x" * 300, "", 400, "longer than 200"),
        ("GET", "/nope", b"", "", 404, "no page /nope"),
        ("GET", "/at/zzzz", b"", "", 404, "no commit 'zzzz'"),
        ("POST", "/revert/abcdef12", b"", "", 404, "no commit 'abcdef12' in the history"),
        ("DELETE", "/tasks", b"", "", 405, "DELETE is not served here"),
    ],
)
def test_bad_requests_say_why(
    client: tuple[Client, kv.Store], method: str, path: str, body: bytes, kind: str,
    status: int, says: str,
) -> None:  # fmt: skip
    app, store = client
    got, _, data = app(method, path, body, kind)
    assert got == status
    assert says in html.unescape(data.decode())
    assert store.head is None  # nothing committed


def test_the_probe_runs_every_page_on_a_store_in_memory(modules: tuple[Any, Any]) -> None:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import app

        app.probe()
    finally:
        sys.path.remove(str(EXAMPLE))


def test_a_full_volume_is_a_507_and_nothing_changes(modules: tuple[Any, Any]) -> None:
    tasks, web = modules
    backend = kv.MemoryBackend()
    store = kv.open_memory(backend, reserve=0)
    app = Client(web.TodoApp(tasks.Tasks(store)))
    assert app.post_json("/tasks", {"title": "kept"})[0] == 201
    backend.capacity = sum(len(d) for d in backend.files.values())
    status, doc = app.post_json("/tasks", {"title": "x" * 150})
    assert status == 507 and "the volume is full" in doc["error"]
    assert [t["title"] for t in json.loads(app("GET", "/tasks")[2])] == ["kept"]
