"""The chaos soak (``python -m tools.soak``, ``make soak``): load, faults on a schedule, a verdict."""
