"""An example subscriber to the payout events, for internal teams to copy.

It writes one notification line per completed or failed payout to a file (``NOTIFIER_OUTPUT``),
exactly once per event even when the broker delivers it twice: the event ids already written are
remembered in the same file, and nameko acknowledges the message only after the handler returns.

Run it: ``python -m services.common.contracts.example_notifier`` (with ``AMQP_URI`` set).
``@subscriber`` declares its queues as the platform's own are declared (quorum queues with
``BROKER_QUEUE_TYPE=quorum``, so its events outlive a broker node). They are declared when it
first starts; a subscriber that must also receive events
published before its first deployment adds its queues to ``SUBSCRIPTIONS`` in
``services/common/topology.py``, which every service declares at start-up. (The example is not
there: a queue nobody consumes would grow for ever on a platform that does not run it.)
"""
from __future__ import annotations

import json
import os
import threading

from services.common.events import subscriber
from services.common.money import Money

_write_lock = threading.Lock()


class PayoutNotifier:
    name = "payout_notifier"

    @staticmethod
    def _output() -> str:
        return os.environ.get("NOTIFIER_OUTPUT", "payout-notifications.jsonl")

    def _notify(self, event: dict, text: str) -> None:
        path = self._output()
        with _write_lock:
            seen = set()
            if os.path.exists(path):
                with open(path) as f:
                    seen = {json.loads(line)["event_id"] for line in f if line.strip()}
            if event["event_id"] in seen:
                return  # a redelivery: already notified
            with open(path, "a") as f:
                f.write(json.dumps({"event_id": event["event_id"], "user_id": event["data"]["user_id"], "message": text}) + "\n")
                f.flush()
                os.fsync(f.fileno())

    @subscriber("settlement", "payout.completed")
    def on_completed(self, event):
        amount = Money(event["data"]["amount"], event["data"]["currency"])
        self._notify(event, f"Your payout of {amount} is on its way.")

    @subscriber("settlement", "payout.failed")
    def on_failed(self, event):
        amount = Money(event["data"]["amount"], event["data"]["currency"])
        self._notify(event, f"Your payout of {amount} failed ({event['data']['reason']}); the money is back in your revenue.")


if __name__ == "__main__":
    import eventlet

    eventlet.monkey_patch()
    from services.common.runner import main

    main("payout_notifier", [PayoutNotifier], schema="none")
