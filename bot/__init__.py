"""The conversation manager: the one place that decides what to say next, with its state,
ordering, run loop, command line and settings."""
