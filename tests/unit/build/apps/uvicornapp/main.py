"""Test app: an ASGI app served by uvicorn, which imports its loop and protocol by string."""

import os

import uvicorn


async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"hello from uvicorn"})  # type: ignore[operator]


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), log_level="warning"
    )
