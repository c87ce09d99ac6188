"""The bound on unfinished jobs (orchestrator_svc.admission): counts plus what was admitted since."""

from __future__ import annotations

from orchestrator_svc.admission import Admission


def test_admits_up_to_the_limit_counting_its_own_admissions_between_counts():
    a = Admission(limit=100)
    a.recount(90)
    assert a.admit(6) and a.admit(4)
    assert not a.admit(1)  # 100 now: the next job would pass it
    a.recount(50)  # the workers finished some
    assert a.admit(50) and not a.admit(1)


def test_a_refused_request_is_not_counted():
    a = Admission(limit=10)
    assert not a.admit(11)
    assert a.unfinished == 0 and a.admit(10)


def test_zero_means_no_bound():
    a = Admission(limit=0)
    a.recount(10**9)
    assert a.admit(10**6)


def test_what_is_admitted_while_the_count_runs_stays_counted():
    a = Admission(100)
    assert a.admit(30)
    began = a.since  # the count starts; it may not see the 30 yet, nor what comes next
    assert a.admit(40)
    a.recount(30, began)  # it saw the first 30 only
    assert a.unfinished == 70 and not a.admit(31)
