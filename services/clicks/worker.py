"""The click worker: drains click requests in batches, commits them, answers, then acknowledges.

Run any number of them (``python -m services.clicks.worker``): they are competing consumers on one
durable queue and keep no state of their own. A worker collects up to ``CLICK_BATCH_SIZE``
requests or waits ``CLICK_BATCH_WAIT_MS``, resolves the batch in one statement and one commit
(``services.clicks.ingest``), sends the answers grouped per gateway reply queue, and acknowledges
the batch last. Killed at any point, its unacknowledged requests go to another worker; requests it
had already committed are recognised by their id and answered ``ok`` again.

A batch that fails because the database is away is retried (the requests stay unacknowledged); a
batch that fails on its data is split, and a request that fails on its own is answered
``server_error`` and moved to the dead-letter queue with the reason, so nothing loops for ever.
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import sys
import time

import amqp
import psycopg2
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy.engine import make_url

from services.common import broker, logs, settings
from services.clicks import ingest
from services.common.paging import is_id
from services.common.click_messages import DEAD_LETTER_QUEUE, REQUEST_QUEUE, buffered, connect, declare_queues

log = logging.getLogger("clicks.worker")


def libpq_dsn(sqlalchemy_url: str) -> str:
    url = make_url(sqlalchemy_url)
    parts = {"dbname": url.database, "user": url.username, "password": url.password, "host": url.host, "port": url.port}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v not in (None, ""))


def parse_requests(body, correlation_id) -> list[ingest.ClickRequest]:
    """The click requests of one message, in either form of the contract (click_messages)."""
    data = json.loads(body)
    if isinstance(data, dict) and "requests" in data:
        rows = data["requests"]
        if not isinstance(rows, list) or not rows:
            raise ValueError("requests must be a non-empty list")
    else:
        rows = [[correlation_id, data["user_id"], data["thing_id"], data.get("source", "api")]]
    requests = []
    for row in rows:
        request_id, user_id, thing_id, source = row[:4]
        deadline = float(row[4]) if len(row) > 4 and row[4] is not None else None
        if not request_id:
            raise ValueError("a request needs an id")
        requests.append(
            ingest.ClickRequest(
                request_id=str(request_id),
                user_id=int(user_id),
                thing_id=int(thing_id),
                source=source if source in ingest.SOURCES else "api",
                deadline=deadline,
            )
        )
    return requests


class Message:
    __slots__ = ("tag", "reply_to", "request")

    def __init__(self, tag, reply_to, request):
        self.tag, self.reply_to, self.request = tag, reply_to, request


class ClickWorker:
    def __init__(self, amqp_uri: str, db_url: str, batch_size: int = 500, batch_wait_ms: int = 5):
        self.amqp_uri = amqp_uri
        self.dsn = libpq_dsn(db_url)
        self.batch_size = batch_size
        self.batch_wait = batch_wait_ms / 1000.0
        self.running = True
        self.buffer: list[Message] = []
        self.conn = self.channel = self.db = None
        self.rpc_runner = None
        self.rpc = None
        self.processed = 0
        self.heartbeat = None
        self._last_beat = 0.0

    # -- connections ------------------------------------------------------------------------

    def _connect_amqp(self):
        # any node of a cluster: the requests queue and the reply queues are reached from each
        self.conn = connect(self.amqp_uri, read_ahead=True)
        self.channel = self.conn.channel()
        declare_queues(self.channel)
        self.channel.basic_qos(prefetch_size=0, prefetch_count=self.batch_size * 2, a_global=False)
        self.channel.basic_consume(REQUEST_QUEUE, callback=self._on_message)
        self.buffer = []

    def _connect_db(self):
        self.db = psycopg2.connect(self.dsn, connect_timeout=5)

    def _drop_rpc(self):
        runner, self.rpc, self.rpc_runner = self.rpc_runner, None, None
        if runner is not None:
            try:
                runner.stop()
            except Exception:  # its connection is already gone
                pass

    def _rpc(self):
        if self.rpc is None:
            self.rpc_runner = ClusterRpcProxy({"AMQP_URI": broker.ordered_uri(self.amqp_uri), "serializer": "json"}, timeout=10)
            self.rpc = self.rpc_runner.start()
        return self.rpc

    # -- consuming ----------------------------------------------------------------------------

    def _on_message(self, message):
        props = message.properties
        reply_to = props.get("reply_to")
        try:
            items = parse_requests(message.body, props.get("correlation_id"))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            self._dead_letter(message.body, props, f"unreadable click request: {exc}")
            if props.get("correlation_id"):
                self._reply({reply_to: [[props["correlation_id"], {"status": "invalid_request"}]]})
            self.channel.basic_ack(message.delivery_tag)
            return
        impossible = []
        for request in items:
            if is_id(request.thing_id) and is_id(request.user_id):
                self.buffer.append(Message(message.delivery_tag, reply_to, request))
            else:
                # no such row can exist (ids are PostgreSQL bigints): answered without the database
                impossible.append([request.request_id, {"status": ingest.NOT_FOUND}])
        if impossible:
            self._reply({reply_to: impossible})
        if not self.buffer or self.buffer[-1].tag != message.delivery_tag:
            self.channel.basic_ack(message.delivery_tag)

    def _fill_batch(self):
        """Wait for a first request; then take every request already waiting on the socket, and
        wait at most ``batch_wait`` for more, up to ``batch_size``."""
        deadline = time.monotonic() + self.batch_wait if self.buffer else None
        sock = self.conn.transport.sock
        while self.running and len(self.buffer) < self.batch_size:
            if deadline is None:
                timeout = 1.0
                self.conn.heartbeat_tick()  # idle: a node that stopped answering is noticed here
            elif buffered(self.conn) or select.select([sock], [], [], 0)[0]:
                timeout = 1.0  # data is waiting: a whole frame follows at once
            else:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    return
            try:
                # never a sub-millisecond timeout: py-amqp can lose a frame cut by one
                self.conn.drain_events(timeout=max(timeout, 0.002))
            except socket.timeout:
                pass
            if self.buffer and deadline is None:
                deadline = time.monotonic() + self.batch_wait

    # -- the batch ----------------------------------------------------------------------------

    def _backfill(self, requests):
        """Ask the owners about things and readers the replicas have not heard of yet."""
        with self.db.cursor() as cur:
            things = ingest.missing_things(cur, [r.thing_id for r in requests])
            users = ingest.missing_means(cur, [r.user_id for r in requests])
        self.db.rollback()
        if not things and not users:
            return
        rpc = self._rpc()
        found = [t for i in range(0, len(things), 100) for t in rpc.accounts.get_things(things[i : i + 100])]
        means = {}
        for i in range(0, len(users), 1000):
            means.update(rpc.settlement.means_of(users[i : i + 1000]))
        with self.db.cursor() as cur:
            ingest.backfill_things(cur, found)
            ingest.backfill_means(cur, means)
        self.db.commit()

    def _resolve_once(self, requests):
        for _ in range(5):
            try:
                with self.db.cursor() as cur:
                    answers = ingest.resolve(cur, requests)
                self.db.commit()
                return answers
            except ingest.NoOpenPeriod:
                self.db.rollback()  # no period open yet
        raise RuntimeError("no open period")

    def _resolve(self, all_requests):
        """Resolve the batch; requests the replicas could not judge (a thing or a reader they have
        not heard of yet) are asked about and resolved again. Requests past their deadline (their
        caller was already told 503) are answered ``expired`` and not carried out."""
        now = time.time()
        live = [i for i, r in enumerate(all_requests) if r.deadline is None or r.deadline > now]
        answers_by_index = {i: {"status": ingest.EXPIRED} for i in range(len(all_requests))}
        requests = [all_requests[i] for i in live]
        if not requests:
            return [answers_by_index[i] for i in range(len(all_requests))]
        answers = self._resolve_once(requests)
        unsure = [i for i, a in enumerate(answers) if a.get("unsure")]
        if unsure:
            again = [requests[i] for i in unsure]
            try:
                self._backfill(again)
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                raise
            except Exception as exc:
                # the owners could not be asked (the broker restarted, a service is down): these
                # requests get a 503, never a guessed not_found; the proxy is made anew next time
                log.warning("could not ask about %d unknown things or readers (%s); answered unavailable", len(again), exc)
                self._drop_rpc()
                self._rollback_quietly()
                for i in unsure:
                    answers[i] = {"status": ingest.UNAVAILABLE}
            else:
                for i, answer in zip(unsure, self._resolve_once(again)):
                    answers[i] = answer
        recheck = [requests[i].request_id for i, a in enumerate(answers) if a.pop("recheck", False)]
        if recheck:
            # a concurrent worker stored a click with the same key meanwhile: was it this very request?
            with self.db.cursor() as cur:
                mine = ingest.stored_requests(cur, recheck)
            self.db.rollback()
            for answer, request in zip(answers, requests):
                if request.request_id in mine:
                    answer["status"] = ingest.OK
        for answer in answers:
            answer.pop("unsure", None)
        for i, answer in zip(live, answers):
            answers_by_index[i] = answer
        return [answers_by_index[i] for i in range(len(all_requests))]

    def _process(self, batch: list[Message]):
        requests = [m.request for m in batch]
        while True:
            try:
                if self.db is None or self.db.closed:
                    self._connect_db()
                answers = self._resolve(requests)
                break
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                log.warning("database unavailable (%s); retrying the batch", exc)
                self._close_db()
                if not self.running:
                    return  # stopping: the unacknowledged batch goes to another worker
                time.sleep(0.5)
                self.conn.heartbeat_tick()  # the broker must not take the waiting batch for a dead worker
            except Exception as exc:  # the data of some request: find it
                log.exception("batch failed; resolving its requests one by one")
                self._rollback_quietly()
                try:
                    answers = self._one_by_one(batch, exc)
                except (psycopg2.OperationalError, psycopg2.InterfaceError) as lost:
                    log.warning("database unavailable (%s); retrying the batch", lost)
                    self._close_db()
                    if not self.running:
                        return
                    time.sleep(0.5)
                    continue
                break
        replies: dict[str, list] = {}
        for message, result in zip(batch, answers):
            if message.reply_to:
                replies.setdefault(message.reply_to, []).append([message.request.request_id, result])
        self._reply(replies)
        self.channel.basic_ack(batch[-1].tag, multiple=True)
        self.processed += len(batch)

    def _one_by_one(self, batch, first_error):
        answers = []
        for message in batch:
            try:
                answers.extend(self._resolve([message.request]))
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                raise
            except Exception as exc:
                self._rollback_quietly()
                self._dead_letter(json.dumps(message.request.__dict__), {"correlation_id": message.request.request_id}, repr(exc))
                answers.append({"status": "server_error"})
        return answers

    def _reply(self, replies: dict):
        for reply_to, items in replies.items():
            if not reply_to:
                continue
            self.channel.basic_publish(
                amqp.Message(json.dumps(items), content_type="application/json"), exchange="", routing_key=reply_to
            )

    def _dead_letter(self, body, props, reason):
        log.error("dead-lettering a click request: %s", reason)
        self.channel.basic_publish(
            amqp.Message(body, application_headers={"x-reason": reason[:500]}, correlation_id=props.get("correlation_id"), delivery_mode=2),
            exchange="",
            routing_key=DEAD_LETTER_QUEUE,
        )

    def _rollback_quietly(self):
        try:
            self.db.rollback()
        except Exception:
            self._close_db()

    def _close_db(self):
        try:
            if self.db is not None:
                self.db.close()
        except Exception:
            pass
        self.db = None

    def _close_amqp(self):
        try:
            if self.conn is not None:
                self.conn.collect()
        except Exception:
            pass
        self.conn = self.channel = None

    # -- main loop -----------------------------------------------------------------------------

    def _beat(self):
        """Touch the heartbeat file at most once a second: the container health check reads it."""
        now = time.monotonic()
        if self.heartbeat and now - self._last_beat > 1.0:
            self._last_beat = now
            with open(self.heartbeat, "w") as f:
                f.write(str(os.getpid()))

    def run(self):
        while self.running:
            try:
                if self.conn is None:
                    self._connect_amqp()
                    log.info("consuming %s", REQUEST_QUEUE)
                self._beat()
                self._fill_batch()
                if self.buffer:
                    # never split a message between batches: it is acknowledged once, with its batch
                    cut = min(self.batch_size, len(self.buffer))
                    while cut < len(self.buffer) and self.buffer[cut].tag == self.buffer[cut - 1].tag:
                        cut += 1
                    batch, self.buffer = self.buffer[:cut], self.buffer[cut:]
                    self._process(batch)
            except (OSError, amqp.exceptions.AMQPError) as exc:
                # the broker went away (or the node, or it stopped answering: missed heartbeats):
                # unacknowledged requests return to the queue; the next connection tries the
                # other nodes first
                log.warning("broker connection lost (%s); reconnecting", exc)
                if self.conn is not None:
                    broker.node_lost(self.conn)
                self._close_amqp()
                self.buffer = []
                if self.running:  # a stop that closed the connection is not waited on
                    time.sleep(0.5)
        self._close_amqp()
        self._close_db()
        if self.rpc_runner is not None:
            self.rpc_runner.stop()

    def stop(self, *_):
        self.running = False


HEARTBEAT = os.environ.get("CLICK_WORKER_HEARTBEAT", "/tmp/click-worker.heartbeat")


def healthy(max_age: float = 30.0) -> bool:
    """The worker's loop went round recently (it beats at least every couple of seconds)."""
    try:
        return time.time() - os.path.getmtime(HEARTBEAT) < max_age
    except OSError:
        return False


def main():
    if sys.argv[1:] == ["--check"]:
        return 0 if healthy() else 1
    logs.configure("click-worker")
    broker.fail_over_quickly()
    worker = ClickWorker(
        settings.get("AMQP_URI"),
        settings.get("CLICKS_DATABASE_URL"),
        batch_size=settings.get_int("CLICK_BATCH_SIZE"),
        batch_wait_ms=settings.get_int("CLICK_BATCH_WAIT_MS"),
    )
    worker.heartbeat = HEARTBEAT
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    log.info("click worker %s starting", os.getpid())
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
