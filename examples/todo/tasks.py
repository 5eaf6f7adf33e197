"""The task list's model: actions, projects and contexts kept in a KV_RW store, one commit each.

Keys (values are JSON objects):

    tasks/<id>       {"title", "done", "project", "context", "created"}
    projects/<slug>  {"name"}
    contexts/<slug>  {"name"}

A task's project and context are slugs of those keys ("" for none); ids sort by creation.
Every change is one commit whose message says what happened in words ("add: buy milk",
"done: buy milk", "revert to 1a2b3c4d (add: buy milk)"), so the store's history is the
app's history: `git log` on the volume reads like the history page. Nothing here does I/O
but through the store, and nothing knows about HTTP (web.py does).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass

from summon.devices import KV_RO, KV_RW, Commit

MAX_TITLE = 200
_SLUG = re.compile(r"[^a-z0-9]+")
_COMMIT = re.compile(r"^[0-9a-f]{4,40}$")


class Invalid(ValueError):
    """Input the app refuses: the message says what is wrong (an HTTP 400)."""


class NotFound(KeyError):
    """No task, or no commit, of that id (an HTTP 404)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Task:
    id: str
    title: str
    done: bool
    project: str  # a project's slug, "" for none
    context: str  # a context's slug, "" for none
    created: int  # seconds since 1970

    def json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "done": self.done,
            "project": self.project,
            "context": self.context,
            "created": self.created,
        }


def check_name(what: str, text: object) -> str:
    """A title or a name, trimmed: one line of 1 to MAX_TITLE characters."""
    if not isinstance(text, str):
        raise Invalid(f"{what} must be text, not {type(text).__name__}")
    text = " ".join(text.split())
    if not text:
        raise Invalid(f"{what} is empty")
    if len(text) > MAX_TITLE:
        raise Invalid(f"{what} is longer than {MAX_TITLE} characters")
    return text


def slug(name: str) -> str:
    """The key of a project or context named `name`: "Home Office" -> "home-office"."""
    return _SLUG.sub("-", name.lower()).strip("-") or "x"


class Tasks:
    """The task list in a store, or (read-only) as it was at one of its commits."""

    def __init__(self, store: KV_RW, view: KV_RO | None = None) -> None:
        self.store = store
        self.view: KV_RO = view if view is not None else store

    # --- reading ---

    def tasks(self) -> list[Task]:
        """Every task, oldest first."""
        return [self._task(key) for key in self.view.list("tasks/")]

    def task(self, task_id: str) -> Task:
        key = "tasks/" + task_id
        if not task_id.isalnum() or not self.view.exists(key):
            raise NotFound(f"no task {task_id!r}")
        return self._task(key)

    def _task(self, key: str) -> Task:
        doc = json.loads(self.view.get(key))
        return Task(
            id=key.partition("/")[2],
            title=doc["title"],
            done=bool(doc["done"]),
            project=doc.get("project", ""),
            context=doc.get("context", ""),
            created=int(doc.get("created", 0)),
        )

    def names(self, kind: str) -> dict[str, str]:
        """slug -> name of the projects or the contexts (kind: "projects" or "contexts")."""
        return {
            key.partition("/")[2]: json.loads(self.view.get(key))["name"]
            for key in self.view.list(kind + "/")
        }

    def history(self, limit: int = 200) -> list[Commit]:
        return self.store.history(limit=limit)

    def at(self, commit: str) -> Tasks:
        """The list as it was at `commit` (an id, or a prefix of at least 4 digits)."""
        return Tasks(self.store, self.store.at(self.resolve(commit)))

    def resolve(self, commit: str) -> str:
        """The full id of the commit `commit` names (a prefix will do); NotFound otherwise."""
        if not _COMMIT.match(commit):
            raise NotFound(f"no commit {commit!r}")
        for c in self.store.history():
            if c.id.startswith(commit):
                return c.id
        raise NotFound(f"no commit {commit!r} in the history")

    # --- changing: one commit each ---

    def add(self, title: str, project: str = "", context: str = "") -> tuple[Task, str]:
        """Add an open task (making its project and context if new); (task, commit id)."""
        title = check_name("title", title)
        task_id = f"{time.time_ns():016x}{os.urandom(2).hex()}"
        message = f"add: {title}"
        with self.store.transaction(message) as tx:
            refs = {}
            for kind, name in (("projects", project), ("contexts", context)):
                refs[kind] = ""
                if name:
                    name = check_name(kind[:-1], name)
                    refs[kind] = slug(name)
                    key = f"{kind}/{refs[kind]}"
                    if not tx.exists(key):
                        tx.set(key, _dump({"name": name}))
            task = Task(task_id, title, False, refs["projects"], refs["contexts"], int(time.time()))
            doc = task.json()
            del doc["id"]
            tx.set("tasks/" + task_id, _dump(doc))
        return task, self.store.head or ""

    def set_done(self, task_id: str, done: bool) -> str:
        task = self.task(task_id)
        if task.done == done:
            return self.store.head or ""
        doc = task.json()
        del doc["id"]
        doc["done"] = done
        verb = "done" if done else "not done"
        return self.store.set("tasks/" + task_id, _dump(doc), message=f"{verb}: {task.title}")

    def delete(self, task_id: str) -> str:
        task = self.task(task_id)
        return self.store.delete("tasks/" + task_id, message=f"delete: {task.title}")

    def add_name(self, kind: str, name: str) -> str:
        """Add a project or a context (kind "projects" or "contexts"); the commit id."""
        name = check_name(kind[:-1], name)
        return self.store.set(
            f"{kind}/{slug(name)}", _dump({"name": name}), message=f"add {kind[:-1]}: {name}"
        )

    def revert(self, commit: str) -> str:
        """Make the list again what it was at `commit`: a new commit, history kept."""
        full = self.resolve(commit)
        (then,) = [c for c in self.store.history() if c.id == full]
        return self.store.revert(full, message=f"revert to {full[:8]} ({then.message})")


def _dump(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()
