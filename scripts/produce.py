#!/usr/bin/env python3
"""Produce a realistic churn-style event stream to Kafka, keyed by entity.

    python scripts/produce.py --bootstrap 127.0.0.1:9092 --topic customer_events \
        --customers 1000 --days 60 [--partitions 3] [--rate 5000]

Events come from the same generator as ``asof-stream demo`` (out of order, some late).
Each message is keyed by ``customer_id``, so the default murmur2 partitioner keeps an
entity's history in one partition (what sharded mode relies on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from asof_stream.demo.data import generate


async def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                             replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def produce(args: argparse.Namespace) -> int:
    data = generate(customers=args.customers, days=args.days, seed=args.seed)
    if args.partitions:
        await ensure_topic(args.bootstrap, args.topic, args.partitions)
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=20,
                                max_batch_size=1 << 20)
    await producer.start()
    started = time.perf_counter()
    try:
        for i, ev in enumerate(data.events):
            await producer.send(args.topic, json.dumps(ev).encode(),
                                key=str(ev["customer_id"]).encode())
            if args.rate and i % 1000 == 999:
                ahead = (i + 1) / args.rate - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    took = time.perf_counter() - started
    print(f"produced {len(data.events)} events to {args.topic} in {took:.1f}s")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--topic", default="customer_events")
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--partitions", type=int, default=0,
                   help="Create the topic with this many partitions first (0: do not).")
    p.add_argument("--rate", type=float, default=0, help="Events per second (0: as fast as possible).")
    return asyncio.run(produce(p.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
