"""make bench-ingest: a pre-filled queue of click requests drained into committed rows, answers sent.

Reference, measured in the same run on the same broker: a bare kombu consumer (prefetch 1000,
acknowledging every 100 messages, no other work) draining the same number of messages.
Figure: the click worker's throughput as a ratio of the reference's. Afterwards the answers and
the committed rows are counted exactly.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid

import amqp
from kombu import Connection, Consumer, Exchange, Queue
from sqlalchemy import create_engine, text

from bench.common import private_environment, progress, say
from testsupport.seeding import seed_click_path
from services.clicks.worker import ClickWorker
from services.common.click_messages import REQUEST_QUEUE, connect, declare_queues

N = int(os.environ.get("BENCH_N", "50000"))
READERS, THINGS = 5000, 2000
REPLY_QUEUE = "bench.replies"


def fill(amqp_uri: str, queue: str, bodies, reply_to: str | None = None) -> None:
    conn = connect(amqp_uri)
    channel = conn.channel()
    declare_queues(channel)
    channel.queue_declare(queue, durable=True, auto_delete=False)
    if reply_to:
        channel.queue_declare(reply_to, durable=True, auto_delete=False)
    channel.confirm_select()
    for i, body in enumerate(bodies):
        message = amqp.Message(body, delivery_mode=2, content_type="application/json", correlation_id=str(uuid.uuid4()), reply_to=reply_to)
        channel.basic_publish(message, exchange="", routing_key=queue)
        if i % 5000 == 0:
            progress(f"filling {queue}", i, N)
    progress(f"filling {queue}", N, N)
    conn.close()


def reference(amqp_uri: str, bodies) -> float:
    fill(amqp_uri, "bench.reference", bodies)
    received = 0
    done = threading.Event()
    with Connection(amqp_uri) as conn:
        queue = Queue("bench.reference", Exchange(""), durable=True)
        channel = conn.channel()

        def on_message(body, message):
            nonlocal received
            received += 1
            if received % 100 == 0 or received == N:
                message.ack(multiple=True)
            if received == N:
                done.set()

        consumer = Consumer(channel, queues=[queue], callbacks=[on_message], accept=["json", "application/json"], auto_declare=False)
        consumer.qos(prefetch_count=1000)
        started = time.perf_counter()
        consumer.consume()
        while not done.is_set():
            conn.drain_events(timeout=5)
        elapsed = time.perf_counter() - started
        consumer.cancel()
    return elapsed


def worker_run(db_url: str, amqp_uri: str, bodies) -> tuple[float, ClickWorker]:
    fill(amqp_uri, REQUEST_QUEUE, bodies, reply_to=REPLY_QUEUE)
    worker = ClickWorker(amqp_uri, db_url, batch_size=int(os.environ.get("CLICK_BATCH_SIZE", "500")), batch_wait_ms=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    started = time.perf_counter()
    thread.start()
    last = -1
    while worker.processed < N:
        time.sleep(0.01)
        if worker.processed // 5000 != last // 5000:
            progress("click worker", worker.processed, N)
        last = worker.processed
    elapsed = time.perf_counter() - started
    progress("click worker", N, N)
    worker.stop()
    thread.join(timeout=10)
    return elapsed, worker


def count_answers(amqp_uri: str) -> dict:
    counts: dict[str, int] = {}
    conn = connect(amqp_uri)
    channel = conn.channel()
    while True:
        message = channel.basic_get(REPLY_QUEUE, no_ack=True)
        if message is None:
            break
        for _, answer in json.loads(message.body):
            counts[answer["status"]] = counts.get(answer["status"], 0) + 1
    conn.close()
    return counts


def main() -> int:
    random.seed(7)
    pairs = [(random.randint(1, READERS), random.randint(1, THINGS)) for _ in range(N)]
    bodies = [json.dumps({"user_id": u, "thing_id": t, "source": "api"}) for u, t in pairs]
    with private_environment("ingest") as (db_url, amqp_uri):
        say(f"seeding {READERS} readers with means and {THINGS} things")
        seed_click_path(db_url, READERS, THINGS)
        say(f"reference: bare kombu consumer draining {N} messages (prefetch 1000, ack every 100)")
        ref = reference(amqp_uri, bodies)
        say(f"  {ref:.2f} s = {N / ref:,.0f} messages/s")
        say(f"click worker: {N} click requests -> committed rows, answers sent")
        elapsed, _ = worker_run(db_url, amqp_uri, bodies)
        say(f"  {elapsed:.2f} s = {N / elapsed:,.0f} clicks/s")
        answers = count_answers(amqp_uri)
        engine = create_engine(db_url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM clicks.clicks")).scalar()
            distinct = conn.execute(text("SELECT count(DISTINCT (user_id, thing_id)) FROM clicks.clicks")).scalar()
        engine.dispose()
        expected_ok = len(set(pairs))
        say(f"answers: {answers}; rows committed: {rows}; distinct pairs sent: {expected_ok}")
        exact = answers.get("ok", 0) == rows == distinct == expected_ok and sum(answers.values()) == N
        say(f"exact: {'yes' if exact else 'NO'} (every request answered once, every ok is one row)")
        ratio = ref / elapsed
        print(f"ratio={ratio:.2f} worker_clicks_per_s={N / elapsed:.0f} reference_msgs_per_s={N / ref:.0f} exact={'yes' if exact else 'no'}")
        return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
