"""A WSGI function on wsgiref.simple_server; the page is a Mako template compiled at start."""

import json
import os
from wsgiref.simple_server import make_server

from mako.template import Template

PAGE = Template("""<!doctype html>
<p>hello from ${name}</p>
<ul>
% for item in items:
<li>${item | h}</li>
% endfor
</ul>
""")


def app(environ, start_response):
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/" and method == "GET":
        body = PAGE.render(name="mako_wsgiref", items=["<b>", "x&y"]).encode()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [body]
    if path == "/echo" and method == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        data = json.loads(environ["wsgi.input"].read(size))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"echo": data}).encode()]
    if path == "/error":
        raise RuntimeError("the error route fails on purpose")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


if __name__ == "__main__":
    with make_server("0.0.0.0", int(os.environ.get("PORT", "8000")), app) as server:
        server.serve_forever()
