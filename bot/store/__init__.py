"""Conversation state, inbox, transcript and outbox behind one interface (see base.Store)."""

from bot.store.base import ConversationState, OutboxItem, Store

__all__ = ["ConversationState", "OutboxItem", "Store"]
