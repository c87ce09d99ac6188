"""What users run against a stack: the CLI, the simulator, the demo, the load test, the model check,
the benchmarks (tools.bench), and the synthetic series they all send (tools.patterns)."""

import satkit  # noqa: F401  (first: it turns off gRPC's fork handlers before gRPC is imported)
