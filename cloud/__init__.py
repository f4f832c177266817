"""Spoke cloud."""
