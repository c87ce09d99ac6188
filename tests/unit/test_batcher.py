"""ingest_svc.batcher on its own, with a recording CreateJobs in place of the orchestrator."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from satlas.internal.v1 import job_control_service_pb2 as jc

from ingest_svc.batcher import Batcher, Overloaded


class Recorder:
    def __init__(self, delay: float = 0.0):
        self.calls: list[tuple[list[str], float]] = []
        self.delay = delay

    async def __call__(self, request: jc.CreateJobsRequest, timeout: float) -> jc.CreateJobsResponse:
        keys = [s.idempotency_key for s in request.submissions]
        self.calls.append((keys, timeout))
        await asyncio.sleep(self.delay)
        return jc.CreateJobsResponse(created=[jc.CreatedJobs(job_ids=[f"id-{k}"]) for k in keys])


def sub(key: str) -> jc.Submission:
    return jc.Submission(series={"values": [1.0, 2.0]}, models=["m"], idempotency_key=key)


async def started(recorder, **kw) -> Batcher:
    options = dict(max_batch=4, max_wait_s=0.01, max_in_flight=2, max_pending=100, max_timeout_s=30.0) | kw
    batcher = Batcher(recorder, **options)
    await batcher.start()
    return batcher


async def test_concurrent_submissions_share_one_call_and_get_their_own_ids():
    recorder = Recorder()
    batcher = await started(recorder)
    futures = [batcher.submit(sub(str(i))) for i in range(6)]
    assert [await f for f in futures] == [[f"id-{i}"] for i in range(6)]
    assert [keys for keys, _ in recorder.calls] == [["0", "1", "2", "3"], ["4", "5"]]  # max_batch 4
    await batcher.stop()


async def test_the_call_gets_the_latest_deadline_of_its_submissions_capped():
    recorder = Recorder()
    batcher = await started(recorder, max_timeout_s=5.0)
    await asyncio.gather(batcher.submit(sub("a"), 0.5), batcher.submit(sub("b"), 2.0))
    await asyncio.gather(batcher.submit(sub("c"), None), batcher.submit(sub("d"), 60.0))
    (_, first), (_, second) = recorder.calls
    assert 1.9 < first <= 2.0 and 4.9 < second <= 5.0
    await batcher.stop()


async def test_a_caller_that_left_or_ran_out_of_time_is_not_sent():
    recorder = Recorder()
    batcher = await started(recorder, max_wait_s=0.05)
    gone = batcher.submit(sub("cancelled"))
    gone.cancel()  # what grpc does to the handler awaiting it when the client goes away
    expired = batcher.submit(sub("expired"), 0.0)
    assert await batcher.submit(sub("kept"), 5.0) == ["id-kept"]
    assert [keys for keys, _ in recorder.calls] == [["kept"]]
    # Its caller's deadline passed: not sent, but answered (a stream with no deadline of its own
    # would otherwise wait on it forever, and the backlog would count it forever).
    assert isinstance(expired.exception(), grpc.aio.AioRpcError)
    assert expired.exception().code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert batcher.backlog == 0
    await batcher.stop()


async def test_errors_reach_every_submission_of_the_call():
    async def broken(request, timeout):
        raise ConnectionError("orchestrator down")

    batcher = await started(broken)
    futures = [batcher.submit(sub(str(i))) for i in range(3)]
    for f in futures:
        with pytest.raises(ConnectionError):
            await f
    await batcher.stop()


async def test_a_full_backlog_is_refused():
    batcher = Batcher(Recorder(), max_batch=4, max_wait_s=0.01, max_in_flight=1, max_pending=2)  # not started
    batcher.submit(sub("1"))
    batcher.submit(sub("2"))
    with pytest.raises(Overloaded):
        batcher.submit(sub("3"))


async def test_a_batch_stays_under_its_byte_limit_and_nothing_is_dropped():
    recorder = Recorder()
    big = lambda k: jc.Submission(series={"values": [1.0] * 1000}, models=["m"], idempotency_key=k)  # noqa: E731
    size = big("0").ByteSize()
    batcher = await started(recorder, max_batch=100, max_batch_bytes=int(size * 2.5))
    futures = [batcher.submit(big(str(i))) for i in range(7)]
    assert [await f for f in futures] == [[f"id-{i}"] for i in range(7)]
    assert [keys for keys, _ in recorder.calls] == [["0", "1"], ["2", "3"], ["4", "5"], ["6"]]
    await batcher.stop()


async def test_idle_a_submission_goes_at_once_and_what_comes_while_the_call_is_out_shares_the_next():
    recorder = Recorder(delay=0.2)
    batcher = await started(recorder, max_wait_s=0.0, max_in_flight=1, max_batch=16)
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first = batcher.submit(sub("a"))
        await asyncio.sleep(0.02)
        assert [keys for keys, _ in recorder.calls] == [["a"]]  # no wait for company when idle
        rest = []
        for k in "bcd":  # one at a time while "a" is out
            rest.append(batcher.submit(sub(k)))
            await asyncio.sleep(0.01)
        await asyncio.gather(first, *rest)
        assert [keys for keys, _ in recorder.calls] == [["a"], ["b", "c", "d"]]  # one call, not one for "b" first
        assert loop.time() - t0 < 1.0
    finally:
        await batcher.stop()


async def test_calls_go_at_most_one_per_gap_and_at_once_after_a_quiet_spell():
    recorder = Recorder()  # answers at once: only the gap holds a submission back
    batcher = await started(recorder, max_wait_s=0.0, max_in_flight=1, max_batch=16, gap_s=0.2)
    try:
        loop = asyncio.get_running_loop()
        await batcher.submit(sub("a"))  # quiet before: at once
        t0 = loop.time()
        rest = []
        for k in "bcd":  # within the gap: they wait for it, together
            rest.append(batcher.submit(sub(k)))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        assert [keys for keys, _ in recorder.calls] == [["a"]]
        await asyncio.gather(*rest)
        assert [keys for keys, _ in recorder.calls] == [["a"], ["b", "c", "d"]]
        assert loop.time() - t0 >= 0.15
        await asyncio.sleep(0.25)  # a quiet spell longer than the gap
        t1 = loop.time()
        await batcher.submit(sub("e"))
        assert loop.time() - t1 < 0.1 and recorder.calls[-1][0] == ["e"]
        whole = [batcher.submit(sub(str(i))) for i in range(16)]  # a whole batch does not wait for the gap
        await asyncio.sleep(0.05)
        assert recorder.calls[-1][0] == [str(i) for i in range(16)]
        await asyncio.gather(*whole)
    finally:
        await batcher.stop()


async def test_a_second_call_goes_while_one_is_out_only_for_a_whole_batch():
    recorder = Recorder(delay=0.3)
    batcher = await started(recorder, max_wait_s=0.0, max_in_flight=2, max_batch=4)
    try:
        first = batcher.submit(sub("a"))
        await asyncio.sleep(0.02)
        some = [batcher.submit(sub(k)) for k in "bcd"]  # three waiting: less than a batch
        await asyncio.sleep(0.05)
        assert [keys for keys, _ in recorder.calls] == [["a"]]  # they wait for "a"'s call, as with one slot
        more = [batcher.submit(sub(k)) for k in "ef"]  # now five waiting: a whole batch goes at once
        await asyncio.sleep(0.05)
        assert [keys for keys, _ in recorder.calls] == [["a"], ["b", "c", "d", "e"]]
        await asyncio.gather(first, *some, *more)
        assert [keys for keys, _ in recorder.calls] == [["a"], ["b", "c", "d", "e"], ["f"]]
        assert batcher.in_flight == 0
    finally:
        await batcher.stop()


async def test_after_the_orchestrator_refuses_for_being_full_new_submissions_are_refused_here_for_a_moment(
        monkeypatch):
    from ingest_svc import batcher as module

    monkeypatch.setattr(module, "SHED_S", 0.2)
    calls = []

    async def full(request, timeout):
        calls.append(len(request.submissions))
        if len(calls) == 1:
            raise grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       details="4000 jobs are unfinished")
        return jc.CreateJobsResponse(created=[jc.CreatedJobs(job_ids=["id"]) for _ in request.submissions])

    batcher = await started(full, max_wait_s=0.0)
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await batcher.submit(sub("a"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await batcher.submit(sub("b"))  # not sent: the same answer, at once
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == "4000 jobs are unfinished"
        assert calls == [1] and batcher.backlog == 0
        await asyncio.sleep(0.25)
        assert await batcher.submit(sub("c")) == ["id"]  # asked again once the moment passed
        assert calls == [1, 1]
    finally:
        await batcher.stop()


async def test_a_batch_call_goes_whole_in_one_call_and_counts_its_submissions():
    recorder = Recorder(delay=0.05)
    batcher = await started(recorder, max_batch=4, max_in_flight=1)
    try:
        lone = batcher.submit(sub("a"))
        together = batcher.submit_all([sub(k) for k in "bcd"])
        more = batcher.submit_all([sub(k) for k in "ef"])
        big = batcher.submit_all([sub(str(i)) for i in range(6)])  # past max_batch: still one call
        assert await lone == ["id-a"]
        assert await together == [["id-b"], ["id-c"], ["id-d"]]
        assert await more == [["id-e"], ["id-f"]]
        assert await big == [[f"id-{i}"] for i in range(6)]
        # "ef" would take the first call past 4 submissions: it waits, whole, for the next.
        assert [keys for keys, _ in recorder.calls] == [["a", "b", "c", "d"], ["e", "f"], [str(i) for i in range(6)]]
        assert batcher.backlog == 0 and batcher.waiting == 0
    finally:
        await batcher.stop()


async def test_a_batch_call_fails_whole_in_one_call():
    calls = []

    async def refuse(request, timeout):
        calls.append([s.idempotency_key for s in request.submissions])
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata())

    batcher = await started(refuse, max_batch=2)
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await batcher.submit_all([sub(k) for k in "abc"])
        assert calls == [["a", "b", "c"]]  # past max_batch, still not split: none of it created
        assert batcher.backlog == 0 and batcher.waiting == 0
    finally:
        await batcher.stop()


async def test_an_answer_short_of_its_submissions_fails_every_caller():
    async def short(request, timeout):
        return jc.CreateJobsResponse(created=[jc.CreatedJobs(job_ids=["only"])])

    batcher = await started(short)
    try:
        futures = [batcher.submit(sub("a")), batcher.submit_all([sub("b"), sub("c")])]
        outcomes = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5)
        assert all(isinstance(o, RuntimeError) for o in outcomes)
    finally:
        await batcher.stop()


async def test_a_held_batch_counts_as_waiting_so_a_second_call_may_take_it():
    recorder = Recorder(delay=0.3)
    batcher = await started(recorder, max_wait_s=0.0, max_in_flight=3, max_batch=4)
    try:
        first = batcher.submit(sub("a"))
        await asyncio.sleep(0.02)  # "a" is out alone
        small = batcher.submit(sub("b"))
        big = batcher.submit_all([sub(str(i)) for i in range(4)])  # held: "b" and it pass max_batch
        await asyncio.sleep(0.05)
        # "b" went in a second call, and the held four, a whole batch, in a third without waiting for "a".
        assert [keys for keys, _ in recorder.calls] == [["a"], ["b"], ["0", "1", "2", "3"]]
        await asyncio.gather(first, small, big)
        assert batcher.waiting == 0
    finally:
        await batcher.stop()
