"""A test app for the browser target: notes kept on a volume by plain file writes (WSGI).

GET / lists the notes with a form; POST /add appends one and redirects to /; /boom raises.
In a tab the volume is IndexedDB (IDBFS), saved after each request: a note must survive a
reload and a browser restart with the same profile. Each POST also counts itself in a cookie
(`added`, HttpOnly), shown by GET /: a session as Flask or Django keep one, which the tab's
bridge must keep as a browser would. Its page refuses framing (X-Frame-Options: DENY, as
Django's default middleware sends), and must show in the page shell's frame all the same.
"""

import html
import os
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

NOTES = "/var/notes/notes.txt"


def app(environ, start_response):
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    cookies = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    added = int(cookies["added"].value) if "added" in cookies else 0
    if path == "/" and method == "GET":
        try:
            with open(NOTES) as f:
                notes = f.read().splitlines()
        except FileNotFoundError:
            notes = []
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        page = (
            "<!doctype html><html><head><meta charset=utf-8><title>notes</title></head><body>"
            f"<h1>Notes</h1><ul id=notes>{items}</ul><p id=added>{added}</p>"
            "<form method=post action=/add><input name=text><button>Add</button></form>"
            "</body></html>"
        )
        # Django's default middleware refuses framing: the tab's shell frame must show it.
        framing = [
            ("X-Frame-Options", "DENY"),
            ("Content-Security-Policy", "frame-ancestors 'none'"),
        ]
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), *framing])
        return [page.encode()]
    if path == "/add" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        text = parse_qs(environ["wsgi.input"].read(length).decode()).get("text", [""])[0]
        os.makedirs(os.path.dirname(NOTES), exist_ok=True)
        with open(NOTES, "a") as f:
            f.write(text + "\n")
        cookie = f"added={added + 1}; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax"
        start_response("303 See Other", [("Location", "/"), ("Set-Cookie", cookie)])
        return [b""]
    if path == "/boom":
        raise RuntimeError("boom: the notes app failed on purpose")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
