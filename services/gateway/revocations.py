"""Revoked tokens leave every gateway's cache at once.

accounts publishes ``token.revoked`` when a token is revoked. Each gateway process listens on a
queue of its own (exclusive, gone with the process) bound to accounts' events and drops the
token from its ``TokenCache``. The cache may then trust a checked token for long
(``TOKEN_CACHE_SECONDS``), which spares accounts an RPC per reader every few seconds; but only
while the listener is connected: without it the cache keeps entries for
``TOKEN_CACHE_OFFLINE_SECONDS`` at most, and it forgets everything when the listener
(re)connects, since revocations published meanwhile were missed.
"""
from __future__ import annotations

import json
import logging
import threading

from services.common.click_messages import consume_forever
from services.common.events import exchange_name

log = logging.getLogger(__name__)

EVENT = "token.revoked"


class RevocationListener:
    def __init__(self, amqp_uri: str, cache):
        self.amqp_uri = amqp_uri
        self.cache = cache
        self._closing = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_running(self) -> None:
        """Start the listener on first use (after the gateway process has forked)."""
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen, name="token-revocations", daemon=True)
                self._thread.start()

    def _listen(self) -> None:
        def subscribe(channel):
            exchange = exchange_name("accounts")
            channel.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
            queue, _, _ = channel.queue_declare("", exclusive=True, auto_delete=True)
            channel.queue_bind(queue, exchange, routing_key=EVENT)
            channel.basic_consume(queue, callback=self._on_event, no_ack=True)
            self.cache.go_online()  # from here on, no revocation is missed

        consume_forever(self.amqp_uri, subscribe, lambda: self._closing, self.cache.go_offline, "token revocations", retry_seconds=1.0)

    def _on_event(self, message) -> None:
        try:
            data = json.loads(message.body)["data"]
            self.cache.forget_token(int(data["token_id"]))
        except (ValueError, KeyError, TypeError):
            log.error("unreadable %s event", EVENT)

    def close(self) -> None:
        self._closing = True
