"""Remote upgrade and rollback (docs/upgrade.md), beside the remote room.

Owns signed bundles (bundle, fit, wheels), their download with resume
(download), the install beside the running release (install), the trial
state, ``current`` and the health gate (upgrade), and the launcher that
chooses the release at each start (launcher: stdlib only, it imports
nothing of the project).

May import: the device, station and remote rooms, collector/'s shared
modules (logs, retry, parts), every layer below collector/. Must not import:
the tools or web rooms, the builders (daemon, assembly, cli).
"""
