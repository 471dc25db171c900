"""Flyball streams."""
