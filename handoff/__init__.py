"""Routing a ticket to a level-2 queue, delivering it (signed, retried, never lost) and
receiving the human's events back. (Built with the handoff issue.)"""
