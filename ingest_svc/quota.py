"""Jobs per second per token: a token bucket for each token that submits.

Counted in jobs (a series for two models is two), so that one StreamSeries stream, which Envoy's
rate limit sees as a single call, cannot escape it. The token is the one Envoy verified and
passed on; the ingest only reads its claims (whoever reaches the ingest directly is on the
internal side already). A call without a token (the project's internal clients) is not counted.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections import OrderedDict
from functools import lru_cache

KEEP = 10_000  # buckets kept; the least recently used one goes first


def token_key(metadata) -> str | None:
    """The token's `jti` (else its `sub`) from ``authorization: Bearer``; None without a token."""
    value = next((v for k, v in metadata or () if k == "authorization"), None)
    if not value or not value.startswith("Bearer "):
        return None
    return _claimed_id(value)


@lru_cache(maxsize=1024)  # a producer sends one token on every call: its claims are read once
def _claimed_id(value: str) -> str:
    try:
        payload = value[7:].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("jti") or claims.get("sub") or value[7:])
    except (IndexError, ValueError, AttributeError):
        return value[7:]  # not one Envoy would have passed; counted by its text


class Quota:
    def __init__(self, jobs_per_s: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self.clock = jobs_per_s, burst, clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, at)

    def take(self, key: str | None, jobs: int) -> float:
        """0 when ``jobs`` are admitted (and taken), else the seconds until they would be: infinite
        for more than the burst, which no wait brings."""
        if key is None or not self.rate:
            return 0.0
        if jobs > self.burst:
            return math.inf
        now = self.clock()
        tokens, at = self.buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0 if jobs <= tokens else (jobs - tokens) / self.rate
        self.buckets[key] = (tokens - jobs if not wait else tokens, now)
        while len(self.buckets) > KEEP:
            self.buckets.popitem(last=False)
        return wait

    def give_back(self, key: str | None, jobs: int) -> None:
        """Jobs taken for a call refused after all (the ingest overloaded): the token keeps them."""
        if key is None or not self.rate or key not in self.buckets:
            return
        tokens, at = self.buckets[key]
        self.buckets[key] = (min(self.burst, tokens + jobs), at)
