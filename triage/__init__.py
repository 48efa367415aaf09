"""Qualifying a request and making a ticket: the slots to ask for, priority from impact ×
urgency, category, recurring-problem detection, ticket numbers. (Built with the triage issue;
until then the bot opens a numbered ticket from the request as it was written.)"""
