"""Sanic's own server: a page, a JSON echo, an error route.

Sanic renders its router to Python, rewrites the tree and compiles it when the server starts,
after the port is bound (where a script's seal closes): the build's recording run learns that
code, and the sealed image runs exactly it (docs/sealing.md, "Code the build saw").
"""

import os

from sanic import Sanic
from sanic.response import json, text

app = Sanic("sanic_router")


@app.get("/")
async def index(request):
    return text("hello from sanic_router\n")


@app.post("/echo")
async def echo(request):
    return json({"echo": request.json})


@app.get("/error")
async def error(request):
    raise RuntimeError("the error route fails on purpose")


if __name__ == "__main__":
    app.run(
        host="0.0.0.0",
        port=int(os.environ.get("PORT", "8000")),
        single_process=True,
        access_log=False,
    )
