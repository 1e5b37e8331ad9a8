"""The node's bond health agent: watches the bonds the plugin recorded and tells the cluster."""
