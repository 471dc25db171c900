"""Flyball sim."""
