"""The worker's reading of Triton's errors (analysis_svc.worker.triton_stream.classify): retry, or fail the job."""

from __future__ import annotations


def test_triton_errors_a_retry_can_fix_are_told_from_bad_requests():
    from analysis_svc.worker.triton_stream import TritonRejected, TritonUnavailable, classify

    for message in ("Request for unknown model: 'vae' is not ready", "Failed to retrieve the response error.",
                    "Stub process 'vae_0_0' is not healthy.", "exceeds timeout"):
        assert isinstance(classify(message), TritonUnavailable), message
    assert isinstance(classify("unexpected shape for input 'values'"), TritonRejected)
