"""The ingest's per-token quota (ingest_svc.quota): buckets in jobs, refilled over time, one per token."""

from __future__ import annotations

from support import bearer

from ingest_svc.quota import KEEP, Quota, token_key


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_a_token_gets_its_burst_then_its_rate():
    clock = Clock()
    quota = Quota(jobs_per_s=2, burst=4, clock=clock)
    assert [quota.take("a", 2) for _ in range(3)] == [0, 0, 1.0]  # 4 jobs, then 2 more must wait 1 s
    clock.t += 0.5
    assert quota.take("a", 2) == 0.5  # one job came back; a refusal takes nothing
    clock.t += 0.5
    assert quota.take("a", 2) == 0
    assert quota.take("b", 4) == 0  # every token has its own bucket
    assert quota.take(None, 1000) == 0  # no token: not counted


def test_no_rate_means_no_quota():
    assert Quota(0, 0).take("a", 10**6) == 0


def test_buckets_are_bounded():
    quota = Quota(1, 1)
    for i in range(KEEP + 5):
        quota.take(str(i), 1)
    assert len(quota.buckets) == KEEP and "0" not in quota.buckets


def test_the_key_is_the_tokens_id_else_its_subject():
    assert token_key(bearer({"jti": "j1", "sub": "ana"})) == "j1"
    assert token_key(bearer({"sub": "ana"})) == "ana"
    assert token_key([("authorization", "Bearer opaque")]) == "opaque"
    assert token_key([("x-other", "1")]) is None and token_key(None) is None


def test_jobs_given_back_return_to_the_bucket_up_to_the_burst():
    clock = Clock()
    quota = Quota(jobs_per_s=2, burst=4, clock=clock)
    assert quota.take("a", 4) == 0
    quota.give_back("a", 3)  # a call refused after its jobs were taken
    assert quota.take("a", 3) == 0 and quota.take("a", 1) > 0
    quota.give_back("a", 100)
    assert quota.take("a", 5) > 0 and quota.take("a", 4) == 0  # never past the burst
    quota.give_back("unknown", 3)  # nothing to give back to
    quota.give_back(None, 3)


def test_more_than_the_burst_never_fits():
    quota = Quota(jobs_per_s=2, burst=4, clock=Clock())
    assert quota.take("a", 5) == float("inf")
    assert quota.take("a", 4) == 0  # nothing was taken for it
