"""The browser tests' server closes every answer, even one whose browser reset the connection after asking."""
from __future__ import annotations

import gc
import socket
import struct
import threading
import time
import warnings

from flask import Flask
from werkzeug.serving import make_server

from portal.config import PROJECT_ROOT
from tests.browser.conftest import _answered_whole


def _unclosed_files_after_resets(app, requests: int = 50) -> int:
    """Ask for a static file `requests` times, each time resetting the connection at once, as a browser does with a
    request it no longer needs; count the files left for the garbage collector to close."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(requests):
                with socket.create_connection(("127.0.0.1", server.server_port)) as browser:
                    browser.sendall(b"GET /static/favicon.svg HTTP/1.1\r\nHost: portal.test\r\n\r\n")
                    time.sleep(0.002)  # the answer is on its way
                    browser.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
            time.sleep(0.3)  # the server's threads finish
            gc.collect()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return sum("favicon.svg" in str(warning.message) for warning in caught)


def test_an_answer_is_closed_even_when_the_browser_reset_the_connection():
    app = Flask(__name__, static_folder=str(PROJECT_ROOT / "static"))
    assert _unclosed_files_after_resets(_answered_whole(app)) == 0
    assert _unclosed_files_after_resets(app) > 0  # werkzeug's own server, unwrapped, leaves them open
