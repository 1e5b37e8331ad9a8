"""Cluster tier plugin (the local control plane fixtures). Owned by the cluster rig."""
