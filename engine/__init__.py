"""Streaming customer journey engine: Kafka in, lifecycle stages and triggers out."""

__version__ = "0.1.0"
