"""The tools room: what a technician uses on the box, beside collector/web/.

Owns the control socket (control, its client control_client), the
technician CLI's commands (techcli: status, ports, orders … from the running
collector or its store), selftest, decode (a capture told frame by frame),
export, verify (the store's chains), the read-only store queries
(storeview), the web page's chart data and backlog samples (charts,
history), station-local times (localtime) and the process's footprint.
Reads; writes nothing a record depends on.

May import: every other room (device, station, remote, ota, web) and
collector/'s shared modules (logs, retry, parts), every layer below
collector/. Must not import: the builders (daemon, assembly, cli).
"""
