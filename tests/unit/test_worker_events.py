"""The worker's task events: buffered by Celery, sent by our consumer on a timer, once per batch."""

from analysis_svc.worker import consumer


class Hub:
    def __init__(self):
        self.timers = []

    def call_later(self, delay, callback):
        self.timers.append((delay, callback))
        return object()


def make(hub):
    c = consumer.Consumer.__new__(consumer.Consumer)  # only the parts the batching touches
    c.hub, c.flushes = hub, 0

    def flush():
        c.flushes += 1

    c._flush_events = flush
    return c


def test_events_buffered_meanwhile_share_one_flush_after_the_interval():
    hub = Hub()
    c = make(hub)
    for _ in range(5):  # Celery calls this for every event it buffers
        c.on_send_event_buffered()
    assert [d for d, _ in hub.timers] == [consumer.FLUSH_S] and c.flushes == 0
    hub.timers.pop()[1]()
    assert c.flushes == 1
    c.on_send_event_buffered()  # the next event starts the next interval
    assert len(hub.timers) == 1


def test_shutdown_sends_what_waits(monkeypatch):
    c = make(Hub())
    monkeypatch.setattr(consumer.CeleryConsumer, "shutdown", lambda self: None)
    c.on_send_event_buffered()
    c.shutdown()
    assert c.flushes == 1
