"""Adapters: the concrete ways processman reaches the outside world."""
