"""A server that, like Sanic, makes its router from Python source after it binds its port.

The seal closes at a script's first bind(): the router's source (compiled as text) and its
rewritten syntax tree (compiled as a tree, as sanic-routing does) are code from strings
after the seal, which the build's recording run learns. GET /compute/N compiles a source
made from the request, which no build saw: the seal refuses it (403 with the reason).

Like attrs (jsonschema's validator classes, which connexion makes again at each GET of its
/openapi.json), record_class() compiles a class's methods from text made of its fields:
once as the app starts, before the seal, and again at each GET of /record, after it. The
recording run never asks for /record: the build learns that code from the first compile.
"""

import ast
import http.server

ROUTES = {"/": "index", "/about": "about"}


def router_source(routes: dict[str, str]) -> str:
    lines = ["def find(path):"]
    lines += [f"    if path == {path!r}:\n        return {name!r}" for path, name in routes.items()]
    return "\n".join([*lines, "    return None", ""])


def record_class(name: str, fields: tuple[str, ...]) -> type:
    """A class whose __init__ and __repr__ are compiled from text, as attrs makes them."""
    init = [f"def __init__(self, {', '.join(fields)}):", *(f"    self.{f} = {f}" for f in fields)]
    shown = ", ".join(f"{f}={{self.{f}!r}}" for f in fields)
    text = "\n".join([*init, "def __repr__(self):", f"    return f'{name}({shown})'", ""])
    namespace: dict[str, object] = {}
    exec(compile(text, f"<generated methods {name}>", "exec"), namespace)
    return type(name, (), namespace)


record_class("Point", ("x", "y"))  # as the app starts: before the seal


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/compute/"):
            try:
                value = eval(f"{int(self.path.rpartition('/')[2])} * 2")
                self.answer(200, f"{value}\n")
            except PermissionError as e:
                self.answer(403, f"{e}\n")
            return
        if self.path == "/record":
            try:
                point = record_class("Point", ("x", "y"))(3, 4)
                self.answer(200, f"{point!r}\n")
            except PermissionError as e:
                self.answer(403, f"{e}\n")
            return
        name = FIND_TEXT(self.path)
        if name is None or FIND_TREE(self.path) != name:
            self.answer(404, "no such page\n")
        else:
            self.answer(200, f"page {name}\n")

    def answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


server = http.server.HTTPServer(("0.0.0.0", 8000), Handler)  # the seal closes here
source = router_source(ROUTES)
text: dict[str, object] = {}
exec(compile(source, "<router>", "exec"), text)
tree = ast.parse(source)
tree.body[0].name = "find_tree"  # type: ignore[attr-defined]
rewritten: dict[str, object] = {}
exec(compile(ast.fix_missing_locations(tree), "", "exec"), rewritten)
FIND_TEXT = text["find"]
FIND_TREE = rewritten["find_tree"]
print("serving", flush=True)
server.serve_forever()
