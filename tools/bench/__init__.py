"""Benchmarks anyone can run: the mesh (``make bench``), Triton alone, the job store, the dashboard."""
