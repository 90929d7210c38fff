"""Gilbarco two-wire current loop (protocols.md §4), read-only master, sans-IO."""
