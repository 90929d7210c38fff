"""A reference platform receiver (and, later, command sender) for tests and the demo."""
