"""Test tiers: unmarked (pure and local-process), `kernel` (in one VM), `cluster` (control plane).

The rigs live in tests/rigs/ as pytest plugins, so one `pytest tests` run drives every tier.
"""

pytest_plugins = ["tests.rigs.kernel_plugin", "tests.rigs.cluster_plugin"]
