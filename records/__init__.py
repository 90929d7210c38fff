"""A record's canonical form and its SM3 chain: the bottom layer.

The store (buffer/) seals each order into its nozzle's chain when it commits
it, and the uplink (uplink/) sends and verifies the same bytes; both import
this package, and it imports nothing of the product. ``canonical.py`` is the
byte form, ``sm3.py`` the digest, ``chain.py`` the chain rule and the fields
outside the hash.
"""
