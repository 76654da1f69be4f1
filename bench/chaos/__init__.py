"""Chaos testing: private Redis and PostgreSQL servers that can be killed and restarted at will."""
