"""kombu's Redis transport with one reused client per channel.

kombu builds a new ``redis.Redis`` for every publish, ack and unacked-message record
(``Channel.conn_or_acquire``); with redis-py 8 each build fills a dict of ~200 response callbacks,
measured at 66 µs a call here, several per Celery message in the worker's main process and one per
publish in the orchestrator. A ``redis.Redis`` is safe to share between threads (it takes a pooled
connection per command), so each channel keeps one.
"""

from __future__ import annotations

from contextlib import contextmanager

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        if self._shared_client is None:
            self._shared_client = self._create_client()
        yield self._shared_client


class Transport(kombu_redis.Transport):
    Channel = Channel
