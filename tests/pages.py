"""A real HTTP server on 127.0.0.1 serving web pages for claim checks, in a thread of the test."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict = field(default_factory=lambda: {"Content-Type": "text/html; charset=utf-8"})
    content_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    delay: float = 0.0  # seconds before the answer starts
    trickle: float = 0.0  # seconds between the bytes of the status line and headers


def claim_page(*, payment_user: str | None = None, owner: str | None = None, extra: str = "") -> bytes:
    head = []
    if payment_user is not None:
        href = f"https://flattr.example/submit/auto?user_id={payment_user}&amp;url=https%3A%2F%2Fblog.example%2F"
        head.append(f'<link rel="alternate payment" type="text/html" href="{href}">')
    if owner is not None:
        head.append(f'<meta name="flattr:owner" content="{owner}">')
    return f"<!doctype html><html><head><title>A post</title>{''.join(head)}{extra}</head><body>Hello</body></html>".encode()


class PageServer:
    def __init__(self, tls=None):
        """``tls``: a server-side ssl.SSLContext to serve https."""
        self.routes: dict[str, Route] = {}
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                server.requests.append({"path": self.path, "host": self.headers.get("Host")})
                route = server.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    route = Route(b"<html>not here</html>", status=404)
                if route.delay:
                    time.sleep(route.delay)
                head = f"HTTP/1.0 {route.status} X\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in route.headers.items())
                if route.content_length:
                    head += f"Content-Length: {len(route.body)}\r\n"
                head += "\r\n"
                try:
                    if route.trickle:
                        for byte in head.encode():
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(route.trickle)
                    else:
                        self.wfile.write(head.encode())
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a size cap or a timeout): expected

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def serve(self, path: str, body: bytes = b"", **options) -> str:
        self.routes[path] = Route(body, **options)
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self.serve(path, b"", status=status, headers={"Location": location, "Content-Type": "text/html"})

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
