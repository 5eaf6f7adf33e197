"""A test app for the browser target: notes kept on a volume by plain file writes (WSGI).

GET / lists the notes with a form; POST /add appends one and redirects to /; /boom raises.
In a tab the volume is IndexedDB (IDBFS), saved after each request: a note must survive a
reload and a browser restart with the same profile.
"""

import html
import os
from urllib.parse import parse_qs

NOTES = "/var/notes/notes.txt"


def app(environ, start_response):
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/" and method == "GET":
        try:
            with open(NOTES) as f:
                notes = f.read().splitlines()
        except FileNotFoundError:
            notes = []
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        page = (
            "<!doctype html><html><head><meta charset=utf-8><title>notes</title></head><body>"
            f"<h1>Notes</h1><ul id=notes>{items}</ul>"
            "<form method=post action=/add><input name=text><button>Add</button></form>"
            "</body></html>"
        )
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [page.encode()]
    if path == "/add" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        text = parse_qs(environ["wsgi.input"].read(length).decode()).get("text", [""])[0]
        os.makedirs(os.path.dirname(NOTES), exist_ok=True)
        with open(NOTES, "a") as f:
            f.write(text + "\n")
        start_response("303 See Other", [("Location", "/")])
        return [b""]
    if path == "/boom":
        raise RuntimeError("boom: the notes app failed on purpose")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
