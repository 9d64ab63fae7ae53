"""Benchmarks: `vitaltrail bench ...` measures the pipeline beside the machine's own ceilings."""
