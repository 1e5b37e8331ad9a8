"""`bond-injector doctor`: check the chain a bonded pod needs, and say why a pod has no bond.

Pure modules (`report`, `checks`, `sriovdp`, `selectors`, `podwhy`) decide from plain Kubernetes
objects; `kube` is the one that asks the API server, the webhook and its TLS.
"""
