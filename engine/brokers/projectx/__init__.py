"""The projectx adapter."""
