"""Latency benchmarks: torch-free device runner, isolated launches, statistics, budget verdicts.

Imports nothing here on purpose: `python -m edgedistill.bench.runner` must stay torch-free and light.
"""
