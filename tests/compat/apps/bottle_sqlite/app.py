"""A Bottle app keeping notes in sqlite3 (a file under /tmp, the image's writable place)."""

import json
import os
import sqlite3
import tempfile
import threading

import bottle

app = bottle.Bottle()
_db_path = os.path.join(tempfile.gettempdir(), "notes.sqlite3")
_lock = threading.Lock()


def db() -> sqlite3.Connection:
    conn = sqlite3.connect(_db_path)
    conn.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
    return conn


@app.get("/")
def index():
    with _lock, db() as conn:
        (count,) = conn.execute("SELECT count(*) FROM notes").fetchone()
    return f"hello from bottle_sqlite: {count} notes, sqlite {sqlite3.sqlite_version}\n"


@app.post("/echo")
def echo():
    data = bottle.request.json
    with _lock, db() as conn:
        cur = conn.execute("INSERT INTO notes (body) VALUES (?)", (json.dumps(data),))
        (stored,) = conn.execute("SELECT body FROM notes WHERE id = ?",
                                 (cur.lastrowid,)).fetchone()
    bottle.response.content_type = "application/json"
    return json.dumps({"echo": json.loads(stored), "id": cur.lastrowid})


@app.get("/error")
def error():
    raise RuntimeError("the error route fails on purpose")
