"""A web.py app rendering Templetor templates: / and /hello/NAME are warmed up before the
seal; /late renders a template nobody asked for before it (refused with seal.code).

web.py's debug mode (its default when the environment names no server) compiles templates
at every render; the app leaves it, as in production, unless WEBPY_DEBUG=1."""

import os

import web

web.config.debug = os.environ.get("WEBPY_DEBUG") == "1"

urls = ("/", "Index", "/hello/(.*)", "Hello", "/late", "Late")
render = web.template.render("templates/")


class Index:
    def GET(self):
        return render.index()


class Hello:
    def GET(self, name):
        return render.hello(name)


class Late:
    def GET(self):
        return render.late()


wsgi = web.application(urls, globals()).wsgifunc()
