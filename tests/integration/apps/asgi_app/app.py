"""A test app: a plain ASGI 3 callable with lifespan, no framework. A page, a JSON echo, a
route that fails."""

import json

state = {}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                state["greeting"] = "hello from asgi"
                print("lifespan startup", flush=True)
                await send({"type": "lifespan.startup.complete"})
            else:
                print("lifespan shutdown", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, method = scope["path"], scope["method"]
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if path == "/":
        await respond(send, 200, f"{state['greeting']}, {scope['client'][0]}\n".encode())
    elif path == "/echo" and method == "POST":
        await respond(
            send, 200, json.dumps({"echo": json.loads(body)}).encode(), "application/json"
        )
    elif path == "/error":
        raise RuntimeError("the error route fails on purpose")
    else:
        await respond(send, 404, b"not found\n")


async def respond(send, status, body, content_type="text/plain"):
    headers = [(b"content-type", content_type.encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
