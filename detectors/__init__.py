"""Flyball detectors."""
