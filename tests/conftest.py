"""Test tiers: unmarked (pure and local-process), `kernel` (in one VM), `cluster` (control plane),
`node` (a real node: kubelet, containerd and Multus in one VM).

The rigs live in tests/rigs/ as pytest plugins, so one `pytest tests` run drives every tier.
"""

pytest_plugins = [
    "tests.rigs.kernel_plugin",
    "tests.rigs.cluster_plugin",
    "tests.rigs.node_plugin",
]
