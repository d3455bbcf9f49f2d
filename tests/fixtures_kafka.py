"""Kafka test broker fixture (filled in with the daemon work)."""
