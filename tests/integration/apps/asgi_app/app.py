"""A test app: a plain ASGI 3 callable with lifespan, no framework. A page, a JSON echo, a
route that fails, the client as the server told the app (scope["client"]), and a WebSocket
that answers each message reversed."""

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
    if scope["type"] == "websocket":
        await reverse(receive, send)
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
    elif path == "/peer":
        client = scope["client"] or ("-", "-")
        await respond(send, 200, f"{client[0]} {client[1]}\n".encode())
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


async def reverse(receive, send):
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            print(f"websocket closed with {message['code']}", flush=True)
            return
        await send({"type": "websocket.send", "text": message["text"][::-1]})
