"""The bond CNI plugin: one invocation (dispatch.invoke), its commands, and IPAM delegation."""
