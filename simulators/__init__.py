"""Spoke simulators."""
