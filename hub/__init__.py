"""Spoke hub."""
