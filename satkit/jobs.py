"""Names every process agrees on: the terminal job states, the default models, a model-config flag."""

from satlas.v1 import job_state_pb2 as js

# A job ends in exactly one of these; nothing moves it afterwards.
TERMINAL_STATES = frozenset({js.JOB_STATE_SUCCEEDED, js.JOB_STATE_FAILED, js.JOB_STATE_CANCELLED})

# The models in model_repository/ that clients ask for when told nothing else.
DEFAULT_MODELS = ("vae_timeseries", "transformer_timeseries")

# A config.pbtxt parameter: "true" when a request may carry several series as the rows of one
# batch (the local CPU wrapper), so the worker sends one request per model and length.
MULTI_SERIES = "multi_series_requests"
