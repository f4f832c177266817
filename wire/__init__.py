"""Spoke's wire contract, shared by the hub and the cloud (and nothing else)."""
