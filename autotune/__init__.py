"""autotune: measure speculative-decoding setups on the user's own server and workload."""

__version__ = "0.1.0"
