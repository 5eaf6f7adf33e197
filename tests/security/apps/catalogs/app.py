"""A page per language: a Jinja2 template from a relative folder, a gettext catalog each."""

import gettext
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader

env = Environment(loader=FileSystemLoader("templates"), extensions=["jinja2.ext.i18n"])


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        body = b"ok\n"
    elif path == "/page":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        lang = query.get("lang", ["en"])[0]
        count = int(query.get("n", ["1"])[0])
        catalog = gettext.translation("messages", "locale", [lang], fallback=True)
        env.install_gettext_translations(catalog, newstyle=True)
        body = env.get_template("page.html").render(count=count).encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [body]
