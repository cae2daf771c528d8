"""The upstox adapter."""
