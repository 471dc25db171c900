"""Flyball gateway."""
