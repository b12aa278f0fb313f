"""Stateful stream processing: keyed state, watermarks and event-time windows."""
