"""A test app: a plain WSGI callable, no framework. A page, a JSON echo, a route that fails,
and the client as the server told the app (REMOTE_ADDR, REMOTE_PORT)."""

import json


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        body = f"hello from wsgi, {environ['REMOTE_ADDR']}\n".encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/peer":
        body = f"{environ.get('REMOTE_ADDR', '-')} {environ.get('REMOTE_PORT', '-')}\n".encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/echo" and environ["REQUEST_METHOD"] == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        doc = json.loads(environ["wsgi.input"].read(length))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"echo": doc}).encode()]
    if path == "/error":
        raise RuntimeError("the error route fails on purpose")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
