"""A Flask app: a Jinja2 page, a JSON echo, an error route, a 404."""

import markupsafe
from flask import Flask, abort, jsonify, render_template, request

app = Flask(__name__)


@app.get("/")
def index():
    # The C speedups are what a host install uses; the image must carry them too.
    speedups = markupsafe.escape.__module__ == "markupsafe._speedups"
    return render_template("index.html", name="flask_jinja", items=["<a>", "b&c"],
                           speedups=speedups)


@app.post("/echo")
def echo():
    return jsonify(echo=request.get_json())


@app.get("/error")
def error():
    raise RuntimeError("the error route fails on purpose")


@app.get("/missing")
def missing():
    abort(404)
