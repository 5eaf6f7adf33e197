"""Pages that make code at their first request, as template engines do (Chameleon's holds
object ids, so its text differs at every start); one that no page links to; a link that
ends the app, as a dev server's "quit" does."""

import os

_cache = {}


def _compiled(name, source):
    if name not in _cache:
        namespace = {}
        exec(compile(source, f"<{name}>", "exec"), namespace)
        _cache[name] = namespace["render"]
    return _cache[name]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        body = '<a href="/quit">quit</a> <a href="/linked">linked</a> <a href="same">same</a>'
    elif path == "/quit":  # the recording run asks for it first, and runs again without it
        os._exit(0)
    elif path == "/linked":  # differs at every start: only a warm-up before the seal helps
        body = _compiled("linked", f"_id = {id(object())}\ndef render():\n    return 'linked'\n")()
    elif path == "/same":  # made again at every request, the same text: the build learns it
        namespace = {}
        exec(compile("def render():\n    return 'same'\n", "<same>", "exec"), namespace)
        body = namespace["render"]()
    elif path == "/hidden":  # linked from nowhere: the build never asks for it
        body = _compiled("hidden", "def render():\n    return 'hidden'\n")()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "text/html")])
    return [body.encode()]
