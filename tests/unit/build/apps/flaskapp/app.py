"""Test app: a Flask app served by app.run(), which imports werkzeug.serving lazily."""

import os

import click.utils
from flask import Flask

app = Flask(__name__)


@app.route("/")
def index() -> str:
    import colorsys  # only this request handler imports it

    return repr(colorsys.rgb_to_hsv(1, 0, 0))


@app.route("/expand")
def expand() -> str:
    # A vendored function that imports a stdlib module (glob) only when called.
    return repr(click.utils._expand_args(["no-such-*.txt"]))


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
