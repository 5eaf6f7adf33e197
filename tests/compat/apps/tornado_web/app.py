"""Tornado's own server: a page, a JSON echo, an error route."""

import asyncio
import json
import os

import tornado.web


class Index(tornado.web.RequestHandler):
    def get(self):
        self.write("hello from tornado_web\n")


class Echo(tornado.web.RequestHandler):
    def post(self):
        self.write({"echo": json.loads(self.request.body)})


class Error(tornado.web.RequestHandler):
    def get(self):
        raise RuntimeError("the error route fails on purpose")


async def main():
    app = tornado.web.Application([(r"/", Index), (r"/echo", Echo), (r"/error", Error)])
    app.listen(int(os.environ.get("PORT", "8000")), address="0.0.0.0")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
