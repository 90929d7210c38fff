"""The remote room: what the platform changes on the box, beside collector/ota/.

Owns the platform's commands wired to the running collector (command_setup:
config.get, device.restart, time.sync, key rotation, orders.resend) and the
remote config change (config_change: config.set and config.rollback; the
rules of a change in config_rules, validation in a child in config_plan and
config_check, the files beside the config in config_files, the start-up
environment check in config_env). It reaches the running parts through
collector/parts.py's narrow views, never the daemon.

May import: the device and station rooms, collector/ota (the same rank),
collector/'s shared modules (logs, retry, parts), every layer below
collector/. Must not import: the tools or web rooms, the builders (daemon,
assembly, cli).
"""
