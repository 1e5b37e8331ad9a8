"""Test tiers: unmarked (pure and local-process), `kernel` (inside one VM), `cluster` (local control plane).

The rigs live in tests/rigs/ as pytest plugins so that every tier is driven by one `pytest tests` run.
"""

pytest_plugins = ["tests.rigs.kernel_plugin", "tests.rigs.cluster_plugin"]
