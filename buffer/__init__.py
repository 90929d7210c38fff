"""The store: every record committed to SQLite before anything depends on it.

Owns the schema, the one writer that commits records in order
(buffer/writer.py), the outbox the uplink reads, capacity and eviction.
Seals orders into their nozzle's chain with records/; may import records/,
protocols/ and config/ only, never uplink/ or collector/.
"""
