"""The kite adapter."""
