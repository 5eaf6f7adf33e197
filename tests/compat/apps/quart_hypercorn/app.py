"""Quart on Hypercorn, started in-process with hypercorn.asyncio.serve (no worker processes)."""

import asyncio
import os

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, jsonify, request

app = Quart(__name__)


@app.get("/")
async def index():
    return "hello from quart_hypercorn\n"


@app.post("/echo")
async def echo():
    return jsonify(echo=await request.get_json())


@app.get("/error")
async def error():
    raise RuntimeError("the error route fails on purpose")


if __name__ == "__main__":
    config = Config()
    config.bind = [f"0.0.0.0:{os.environ.get('PORT', '8000')}"]
    config.accesslog = "-"
    asyncio.run(serve(app, config))
