"""The narrow channel boundary: start, stop, send, and an injected callback for what comes in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from bot.messages import AcceptResult, Inbound, Outbound

# Stores the inbound message; the channel acknowledges its platform only once this returns.
OnMessage = Callable[[Inbound], Awaitable[AcceptResult]]


class Channel(ABC):
    name: str

    @abstractmethod
    async def start(self, on_message: OnMessage) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def send(self, message: Outbound, seq: int | None) -> None:
        """Deliver one message to its person; raise bot.errors.DeliveryError when it cannot."""

    async def no_reply(self, inbound: Inbound) -> None:
        """The message was handled and the bot has nothing to say (a human holds the ticket);
        a request/response channel answers its platform now rather than wait."""
        return None
