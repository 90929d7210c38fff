"""CK1313 (宝德尔 Baodeer, 老长空 Changkong non-card), read-only master, sans-IO."""
