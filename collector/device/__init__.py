"""The device room: the gateway box itself, under every other room.

Owns the raw serial file descriptors (serialfd), the run and network LEDs
(leds), the platform's time and the clock helper that steps the clock
(clock, clock_helper), the systemd watchdog and notify socket (watchdog,
sdnotify). Knows nothing of dispensers, records or the platform.

May import: the bottom layers (records/, protocols/, config/) and
collector/'s shared modules (logs, retry, parts). Must not import: any
other room (station, remote, tools, ota, web), the builders (daemon,
assembly, cli), buffer/ or uplink/.
"""
