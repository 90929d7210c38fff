"""The collector's configuration: TOML in, one validated view out.

Owns the config's models (pydantic, validated in a step before the daemon
starts: config/loader.py), the daemon's pydantic-free view of them
(config/view.py), the atomic file write every product file goes through
(config/atomic.py) and the service user's file modes. May import records/ and
protocols/ (each protocol's options) only; never buffer/, uplink/ or
collector/.
"""
