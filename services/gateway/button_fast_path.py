"""The button's own way through the gateway: a GET of a button or badge whose rendered bytes are
in the cache (``services.gateway.button_cache``) and fresh is answered without Flask's request
context (sessions, CSRF, hooks): the button is the most requested page of the platform.
Everything else, misses and expired entries included, goes on to Flask, whose views
(``services.gateway.views.button``) fill the cache. Hits are counted in the same request metrics.
"""
from __future__ import annotations

import re
import time

from services.gateway import metrics
from services.gateway.button_cache import ButtonCache

FRAME_RULE, BADGE_RULE = "/button/<int:thing_id>", "/button/<int:thing_id>.svg"
_BUTTON_PATH = re.compile(r"^/button/([0-9]{1,18})(\.svg)?$")


class ButtonFastPath:
    def __init__(self, wsgi_app, cache: ButtonCache):
        self.wsgi_app = wsgi_app
        self.cache = cache
        self._requests = {rule: metrics.REQUESTS.labels("GET", rule, "200") for rule in (FRAME_RULE, BADGE_RULE)}
        self._latency = {rule: metrics.REQUEST_LATENCY.labels("GET", rule) for rule in (FRAME_RULE, BADGE_RULE)}

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "GET":
            path = environ.get("PATH_INFO", "")
            if path.startswith("/button/"):
                started = time.perf_counter()
                match = _BUTTON_PATH.match(path)
                if match:
                    entry = self.cache.peek(int(match.group(1)))
                    if entry is not None:
                        rendered = entry.svg if match.group(2) else entry.html
                        if rendered is not None:
                            start_response("200 OK", list(rendered[1]))
                            rule = BADGE_RULE if match.group(2) else FRAME_RULE
                            self._requests[rule].inc()
                            self._latency[rule].observe(time.perf_counter() - started)
                            return [rendered[0]]
        return self.wsgi_app(environ, start_response)
