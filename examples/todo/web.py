"""The task list on the web: a WSGI app any client can script.

    GET  /                     the open tasks by title (HTML), a form to add one, the done ones
    GET  /tasks                every task (JSON)
    POST /tasks                add one: a form field or a JSON key `title` (and `project`,
                               `context`); a form is sent back to /, JSON gets 201 and the task
    POST /tasks/ID/done        mark it done; /undone, /delete likewise
    POST /projects, /contexts  add one: a form field or a JSON key `name`
    GET  /history              every change, newest first (HTML; ?format=json for JSON)
    GET  /at/COMMIT            the list as it was after that change (HTML)
    POST /revert/COMMIT        make the list again what it was then (a new change)

Every change answers a form with 303 See Other to / and JSON with the new commit's id; on a
full volume, 507 (nothing changed, everything before still readable).
"""

from __future__ import annotations

import html
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from tasks import Invalid, NotFound, Tasks

from summon.devices import StoreFull

StartResponse = Callable[..., Any]
MAX_BODY = 64 * 1024
STATUS = {
    200: "200 OK",
    201: "201 Created",
    303: "303 See Other",
    400: "400 Bad Request",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    413: "413 Content Too Large",
    507: "507 Insufficient Storage",
}
STYLE = (
    "body{font-family:sans-serif;max-width:42em;margin:2em auto;padding:0 1em}"
    "li{margin:.3em 0}form.inline{display:inline}small{color:#666}"
    "button{font-size:.8em}.done{text-decoration:line-through;color:#666}"
)


class Response:
    def __init__(self, status: int, body: bytes, content_type: str, location: str = "") -> None:
        self.status, self.body, self.content_type, self.location = (
            status, body, content_type, location,
        )  # fmt: skip


def page(title: str, body: str, status: int = 200) -> Response:
    doc = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )
    return Response(status, doc.encode(), "text/html; charset=utf-8")


def as_json(doc: object, status: int = 200) -> Response:
    return Response(status, json.dumps(doc).encode() + b"\n", "application/json")


class TodoApp:
    """The WSGI app over a Tasks model."""

    def __init__(self, tasks: Tasks) -> None:
        self.tasks = tasks

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        wants_json = "json" in environ.get("CONTENT_TYPE", "") or "json" in environ.get(
            "HTTP_ACCEPT", ""
        )
        try:
            response = self.route(environ)
        except Invalid as e:
            response = self.error(400, str(e), wants_json)
        except NotFound as e:
            response = self.error(404, str(e), wants_json)
        except StoreFull as e:  # nothing was committed; what was stays readable
            response = self.error(
                507, f"the volume is full ({e.strerror}): nothing changed", wants_json
            )
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
        ]
        if response.location:
            headers.append(("Location", response.location))
        start_response(STATUS[response.status], headers)
        return [response.body]

    def error(self, status: int, message: str, wants_json: bool) -> Response:
        if wants_json:
            return as_json({"error": message}, status)
        body = f"<p>{html.escape(message)}</p><p><a href='/'>back</a></p>"
        return page(STATUS[status], body, status)

    def route(self, environ: dict[str, Any]) -> Response:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "/")
        parts = [p for p in path.split("/") if p]
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        if method in ("GET", "HEAD"):
            if not parts:
                return self.home()
            if parts == ["tasks"]:
                return as_json([t.json() for t in self.tasks.tasks()])
            if parts == ["history"]:
                return self.history(query.get("format") == ["json"])
            if len(parts) == 2 and parts[0] == "at":
                return self.at(parts[1])
            raise NotFound(f"no page {path}")
        if method != "POST":
            return self.error(405, f"{method} is not served here", False)
        form, is_json = self.body(environ)
        if parts == ["tasks"]:
            task, commit = self.tasks.add(
                form.get("title", ""), form.get("project") or "", form.get("context") or ""
            )
            return self.changed(is_json, {**task.json(), "commit": commit}, 201)
        if len(parts) == 3 and parts[0] == "tasks" and parts[2] in ("done", "undone", "delete"):
            if parts[2] == "delete":
                commit = self.tasks.delete(parts[1])
            else:
                commit = self.tasks.set_done(parts[1], parts[2] == "done")
            return self.changed(is_json, {"commit": commit})
        if parts in (["projects"], ["contexts"]):
            commit = self.tasks.add_name(parts[0], form.get("name", ""))
            return self.changed(is_json, {"commit": commit}, 201)
        if len(parts) == 2 and parts[0] == "revert":
            return self.changed(is_json, {"commit": self.tasks.revert(parts[1])})
        raise NotFound(f"nothing to post to at {path}")

    def body(self, environ: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The request's fields: a JSON object, or a urlencoded form; and whether JSON."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise Invalid("Content-Length is not a number") from None
        if length > MAX_BODY:
            raise Invalid(f"the request body is over {MAX_BODY} bytes")
        raw = environ["wsgi.input"].read(length) if length else b""
        if "json" in environ.get("CONTENT_TYPE", ""):
            try:
                doc = json.loads(raw or b"{}")
            except ValueError as e:
                raise Invalid(f"the body is not JSON: {e}") from None
            if not isinstance(doc, dict):
                raise Invalid('the body must be a JSON object, such as {"title": "milk"}')
            return doc, True
        try:
            fields = urllib.parse.parse_qs(raw.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise Invalid("the form is not UTF-8") from None
        return {k: v[0] for k, v in fields.items()}, False

    def changed(self, is_json: bool, doc: dict[str, Any], status: int = 200) -> Response:
        if is_json:
            return as_json(doc, status)
        return Response(303, b"", "text/plain", "/")

    # --- pages ---

    def home(self) -> Response:
        tasks = self.tasks.tasks()
        projects, contexts = self.tasks.names("projects"), self.tasks.names("contexts")
        open_tasks = [t for t in tasks if not t.done]
        done = [t for t in tasks if t.done]
        body = [f"<h1>Tasks ({len(open_tasks)} open)</h1>", "<ul id=open>"]
        body += [self._item(t, projects, contexts, "done") for t in open_tasks]
        body.append("</ul>")
        body.append(
            "<form method=post action=/tasks><input name=title placeholder='a next action' "
            "required autofocus> <input name=project placeholder=project list=projects> "
            "<input name=context placeholder=context list=contexts> <button>add</button></form>"
        )
        for kind, names in (("projects", projects), ("contexts", contexts)):
            options = "".join(f"<option value='{html.escape(n)}'>" for n in names.values())
            body.append(f"<datalist id={kind}>{options}</datalist>")
        if done:
            body.append(f"<h2>Done ({len(done)})</h2><ul id=done>")
            body += [self._item(t, projects, contexts, "undone") for t in done]
            body.append("</ul>")
        body.append("<p><a href=/history>history</a></p>")
        return page("Tasks", "".join(body))

    def _item(self, t: Any, projects: dict[str, str], contexts: dict[str, str], act: str) -> str:
        tags = []
        if t.project:
            tags.append(projects.get(t.project, t.project))
        if t.context:
            tags.append("@" + contexts.get(t.context, t.context))
        shown = " ".join(html.escape(x) for x in tags)
        cls = " class=done" if t.done else ""
        return (
            f"<li><span{cls}>{html.escape(t.title)}</span> <small>{shown}</small> "
            f"<form class=inline method=post action=/tasks/{t.id}/{act}>"
            f"<button>{act}</button></form></li>"
        )

    def history(self, as_data: bool) -> Response:
        commits = self.tasks.history()
        if as_data:
            return as_json([
                {"id": c.id, "message": c.message, "author": c.author, "time": c.time}
                for c in commits
            ])  # fmt: skip
        rows = [
            f"<li><a href=/at/{c.id}><code>{c.id[:8]}</code></a> "
            f"<small>{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(c.time))}</small> "
            f"{html.escape(c.message)}</li>"
            for c in commits
        ]
        return page("History", f"<h1>History</h1><ol>{''.join(rows)}</ol><p><a href=/>tasks</a>")

    def at(self, commit: str) -> Response:
        then = self.tasks.at(commit)
        full = self.tasks.resolve(commit)
        items = "".join(
            f"<li{' class=done' if t.done else ''}>{html.escape(t.title)}</li>"
            for t in then.tasks()
        )
        body = (
            f"<h1>Tasks at <code>{full[:8]}</code></h1><ul>{items}</ul>"
            f"<form method=post action=/revert/{full}><button>revert to this</button></form>"
            "<p><a href=/history>history</a> <a href=/>now</a></p>"
        )
        return page(f"Tasks at {full[:8]}", body)
