"""The yardstick: a bare Flask app (one JSON route, nothing else) that `benchmarks.http_paths` runs under the same
gunicorn settings as the portal, so each figure can be read as a share of what Flask and gunicorn alone allow.

The route also takes a POST, reading its body as the webhook endpoint does, so webhook acknowledgement is compared
with the bare app receiving the very same signed deliveries."""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def hello():
    return jsonify(ok=True)


@app.post("/")
def receive():
    return jsonify(received=True, length=len(request.get_data(cache=False)))
