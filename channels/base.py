"""The narrow channel boundary: start, stop, send, and an injected callback for what comes in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from bot.messages import AcceptResult, Inbound, Outbound

# Stores the inbound message; the channel acknowledges its platform only once this returns.
OnMessage = Callable[[Inbound], Awaitable[AcceptResult]]


class Channel(ABC):
    name: str
    # True for channels whose people are connected to one process (a WebSocket, a request
    # waiting for its reply): with several processes, replies made elsewhere reach them
    # through bot/fanout.py.
    connection_bound: bool = False

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
        await self.silent_here(inbound)

    async def deliver_here(self, message: Outbound, seq: int | None) -> bool:
        """A connection-bound channel: deliver to a connection of this process, if it holds
        the person's; False when none does (the reply may be for another process)."""
        await self.send(message, seq)
        return True

    async def silent_here(self, inbound: Inbound) -> bool:
        """A connection-bound channel: tell the request of this process waiting for a reply
        to this message that none will come; False when none waits here."""
        return False
