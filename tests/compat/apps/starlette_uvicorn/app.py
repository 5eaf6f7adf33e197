"""Starlette on uvicorn, as its docs start it: uvicorn.run() in the script. Bodies by orjson."""

import os

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


async def index(request):
    return PlainTextResponse("hello from starlette_uvicorn\n")


async def echo(request):
    data = orjson.loads(await request.body())
    return Response(orjson.dumps({"echo": data}), media_type="application/json")


async def error(request):
    raise RuntimeError("the error route fails on purpose")


app = Starlette(routes=[
    Route("/", index),
    Route("/echo", echo, methods=["POST"]),
    Route("/error", error),
])

if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8000")))
