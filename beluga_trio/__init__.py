"""Streaming primitives for trio."""
