"""Serve this page to phones on the same network: python3 serve.py [PORT]  (default 8000).

The same as ``python3 -m http.server --bind 0.0.0.0 PORT``, but sends JavaScript MIME types for ``.mjs`` and
``.wasm`` on every Python version and OS (browsers refuse ES modules served as ``application/octet-stream``),
and prints the addresses to open.
"""

import http.server
import socket
import sys
from pathlib import Path


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=str(Path(__file__).resolve().parent), **kwargs)


def lan_address() -> str:
    """This machine's address on the local network (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print(f"open http://localhost:{port}/ here, or http://{lan_address()}:{port}/ on a phone on the same network")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
