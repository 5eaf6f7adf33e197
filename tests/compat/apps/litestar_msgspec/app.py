"""A Litestar app: a page, a JSON echo validated by a msgspec Struct (400 on a bad body), an
error route."""

import msgspec
from litestar import Litestar, get, post
from litestar.logging import LoggingConfig


class Item(msgspec.Struct):
    n: int
    tags: list[str] = []


@get("/", media_type="text/plain")
async def index() -> str:
    return "hello from litestar_msgspec\n"


@post("/echo", status_code=200)
async def echo(data: Item) -> dict:
    return {"echo": msgspec.to_builtins(data)}


@get("/error")
async def error() -> None:
    raise RuntimeError("the error route fails on purpose")


# Litestar logs a handler's exception only in debug mode unless told to; a service wants it.
app = Litestar(
    route_handlers=[index, echo, error],
    logging_config=LoggingConfig(log_exceptions="always"),
)
