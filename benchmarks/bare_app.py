"""The yardstick: a bare Flask app (one JSON route, nothing else) that `benchmarks.http_paths` runs under the same
gunicorn settings as the portal, so each figure can be read as a share of what Flask and gunicorn alone allow."""
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def hello():
    return jsonify(ok=True)
