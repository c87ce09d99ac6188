"""Names and rules every process agrees on: the terminal job states, the default models, a model-config
flag, the forecast horizon a request may ask for, the events a WatchJobs message carries."""

from satlas.v1 import job_state_pb2 as js

# A job ends in exactly one of these; nothing moves it afterwards.
TERMINAL_STATES = frozenset({js.JOB_STATE_SUCCEEDED, js.JOB_STATE_FAILED, js.JOB_STATE_CANCELLED})


def watched(response) -> list:
    """The jobs of a ``WatchJobsResponse``: ``jobs`` when the watch asked for ``batched``, else its ``job``."""
    return list(response.jobs) or ([response.job] if response.HasField("job") else [])


# The models in model_repository/ that clients ask for when told nothing else.
DEFAULT_MODELS = ("vae_timeseries", "transformer_timeseries")

# A config.pbtxt parameter: "true" when a request may carry several series as the rows of one
# batch (the local CPU wrapper), so the worker sends one request per model and length.
MULTI_SERIES = "multi_series_requests"


def horizon_problem(model: str, model_horizon: int, asked: int) -> str | None:
    """Why ``asked`` forecast points cannot be had from ``model`` (None: they can). A model that
    does not forecast (horizon 0) ignores the request's horizon."""
    if asked and model_horizon and asked > model_horizon:
        return f"asks {asked} points; {model} forecasts at most {model_horizon}"
    return None


def cut_to_horizon(result, model_horizon: int, asked: int) -> None:
    """A forecasting model's predictions cut to the ``asked`` first points (0: all of them)."""
    if asked and model_horizon:
        del result.predictions[asked:]
        for q in result.quantiles:
            del q.values[asked:]
