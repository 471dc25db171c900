"""Flyball's infrastructure shells: the embedded stack, topics, and the ClickHouse history store."""
