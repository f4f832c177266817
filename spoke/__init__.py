"""Spoke spoke."""
