"""One module per channel: platform event → Inbound, Outbound → platform call.

A channel knows nothing of NLU, triage or tickets, and imports only `bot.messages`.
Modules are imported by name from the configuration, so a channel not configured is
never imported.
"""
