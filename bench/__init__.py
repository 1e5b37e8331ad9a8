"""Benchmarks against stand-ins for the peers, printed as ratios (`make bench`)."""
