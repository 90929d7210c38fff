"""Wayne DART (protocols.md §3): a read-only poll master, sans-IO."""
