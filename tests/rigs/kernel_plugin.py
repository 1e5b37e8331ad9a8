"""Kernel tier plugin (boots one VM for all `kernel` tests). Owned by the kernel rig."""
