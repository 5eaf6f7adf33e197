"""A Falcon app: a page, a JSON echo that round-trips through msgpack, an error route."""

import falcon
import msgpack


class Index:
    def on_get(self, req, resp):
        fallback = getattr(msgpack, "fallback", None) is not None and msgpack.Packer is getattr(
            msgpack.fallback, "Packer", None)
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = f"hello from falcon_msgpack (msgpack {'pure' if fallback else 'C'})\n"


class Echo:
    def on_post(self, req, resp):
        packed = msgpack.packb(req.get_media())
        resp.media = {"echo": msgpack.unpackb(packed), "packed_bytes": len(packed)}


class Error:
    def on_get(self, req, resp):
        raise RuntimeError("the error route fails on purpose")


app = falcon.App()
app.add_route("/", Index())
app.add_route("/echo", Echo())
app.add_route("/error", Error())
