"""The station room: the data path from a dispenser's or gauge's line to the store.

Owns the port tasks (port: poll, relay, listen), what a port does with its
events (sink: the nozzle model in nozzles, the edge checks in edge, the
order body in records, the identities; its parts nozzle_records,
port_alarms, port_writer, port_stats), the raw-frame capture tap, the tank
gauge (gauge, gauge_records, wetstock), the smart seals, the nozzles'
own pulse and switch inputs (gpio_inputs, pulse_check), a relay's or tap's
reconciliation with the POS's books (books, reconcile), a poll port's line
lent to the web page's detect (lending), the raw evidence log of every
line's bytes (evidence, evidence_io), the line checks and
the alarms that are stored like any record (alarm_store, selfcheck,
linecheck, link_alarms). Every record goes to the store's writer first;
what depends on it happens after the commit.

May import: the device room, collector/'s shared modules (logs, retry,
parts), buffer/, uplink/ (types), protocols/, config/, records/. Must not
import: the remote, tools, ota or web rooms, the builders (daemon, assembly,
cli).
"""
