"""Streaming sources for the daemon: Kafka and tailed JSONL files (HTTP is the server's /push)."""
