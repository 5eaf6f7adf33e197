"""aiohttp.web's own server: a page, a JSON echo, an error route."""

import os

from aiohttp import web

routes = web.RouteTableDef()


@routes.get("/")
async def index(request):
    return web.Response(text="hello from aiohttp_web\n")


@routes.post("/echo")
async def echo(request):
    return web.json_response({"echo": await request.json()})


@routes.get("/error")
async def error(request):
    raise RuntimeError("the error route fails on purpose")


app = web.Application()
app.add_routes(routes)

if __name__ == "__main__":
    web.run_app(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8000")))
