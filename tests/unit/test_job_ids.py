"""Job ids: version-7 UUIDs, which sort by the time they were made."""

import time
import uuid

from orchestrator_svc.ids import new_ids


def test_ids_are_version_7_uuids_in_the_canonical_form():
    ids = new_ids(1000)
    assert len(set(ids)) == 1000
    for job_id in ids:
        u = uuid.UUID(job_id)
        assert (u.version, u.variant, str(u)) == (7, uuid.RFC_4122, job_id)


def test_ids_begin_with_the_time_they_were_made_so_later_ids_sort_after():
    before = time.time_ns() // 1_000_000
    first = new_ids(3)
    time.sleep(0.002)
    later = new_ids(3)
    after = time.time_ns() // 1_000_000
    for job_id in first + later:
        assert before <= uuid.UUID(job_id).int >> 80 <= after  # the top 48 bits: Unix time in ms
    assert max(first) < min(later)


def test_the_rest_is_random():
    # 74 random bits after the time and the version: over many ids each random hex digit takes many values
    digits = [set(j.replace("-", "")[i] for j in new_ids(200)) for i in (13, 17, 31)]
    assert all(len(d) > 8 for d in digits)
