"""Spoke device_handlers."""
