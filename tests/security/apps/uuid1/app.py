"""uuid.uuid1() at request time: /id answers one, / does not (the warm-up path)."""

import uuid


def app(environ, start_response):
    body = str(uuid.uuid1()) if environ["PATH_INFO"] == "/id" else "hello"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
