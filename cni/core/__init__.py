"""The plugin's pure core: config, options, results, spec versions, errors and the HA rules.

Plain data in, plain data out; no netlink, no subprocess, no sockets (.importlinter keeps it so).
"""
