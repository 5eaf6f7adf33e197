"""A FastAPI app: a page, a validated JSON echo (422 on a bad body), an error route."""

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel


class Item(BaseModel):
    n: int
    tags: list[str] = []


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.greeting = "hello from fastapi_pydantic"
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/", response_class=PlainTextResponse)
async def index() -> str:
    return app.state.greeting + "\n"


@app.post("/echo")
async def echo(item: Item) -> dict:
    return {"echo": item.model_dump()}


@app.get("/error")
async def error() -> None:
    raise RuntimeError("the error route fails on purpose")
