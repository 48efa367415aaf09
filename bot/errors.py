"""Guichet's exception tree. Every error an operator can meet derives from GuichetError.

GuichetError
├── ConfigError            a settings file, article or variable is wrong (carries every problem)
├── StoreError             the state store cannot be reached or refused an operation
│   └── StoreLockedError   another process already runs on this embedded store
└── DeliveryError          a message could not be handed to its channel (retried by the outbox)
"""

from __future__ import annotations

from collections.abc import Sequence

from nlu.problems import DataProblem


class GuichetError(Exception):
    """Root of every error Guichet raises on purpose."""


class ConfigError(GuichetError):
    def __init__(self, problems: Sequence[DataProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StoreError(GuichetError):
    pass


class StoreLockedError(StoreError):
    pass


class DeliveryError(GuichetError):
    def __init__(self, channel: str, reason: str, *, permanent: bool = False) -> None:
        self.channel = channel
        self.permanent = permanent
        super().__init__(f"{channel}: {reason}")
