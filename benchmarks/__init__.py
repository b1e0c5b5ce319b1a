"""relaystore's benchmarks: ``python -m benchmarks [--quick] [--only PATTERN]`` (see harness.py)."""
