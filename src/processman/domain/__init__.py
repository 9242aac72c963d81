"""The pure core of processman: data, rules and decisions, with no I/O."""
