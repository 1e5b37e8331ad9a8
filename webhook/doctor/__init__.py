"""`bond-injector doctor`: check the chain a bonded pod needs, and say why a pod has no bond.

Pure modules decide from plain Kubernetes objects: `checks` (profiles, NADs, the bond's config),
`nodes` (device plugin, nodes, CNI DaemonSet), `podwhy` (one pod), with `sriovdp`, `selectors`
and `report`. The edge asks the cluster: `kube` (finds the installation, runs the checks),
`probe` (the webhook's TLS and dry-run admission), `reader` (the API calls).
"""
