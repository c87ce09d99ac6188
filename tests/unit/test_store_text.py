"""orchestrator_svc.statements: the text the hot writes store without json.dumps or a datetime
conversion per job is what those would have made."""

import datetime as dt
import json

from hypothesis import given
from hypothesis import strategies as st

from orchestrator_svc.statements import Now, metrics_json

seconds = st.floats(allow_nan=True, allow_infinity=True)


@given(seconds, st.none() | seconds, seconds)
def test_the_metrics_column_is_what_json_dumps_writes(inference, queue, total):
    expected = json.dumps({"inference_time": inference, "queue_time": queue, "total_time": total})
    assert metrics_json(inference, queue, total) == expected
    assert json.loads(metrics_json(0.25, None, 1.5)) == {"inference_time": 0.25, "queue_time": None, "total_time": 1.5}


@given(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1)))
def test_a_transactions_stamp_is_its_time(at):
    now = Now(at.replace(tzinfo=dt.timezone.utc))
    assert now.stamp.ToDatetime(dt.timezone.utc) == now.at
    assert now.stamp is now.stamp  # made once per transaction, copied into each snapshot
