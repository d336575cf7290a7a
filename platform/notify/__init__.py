"""Telling people: the notification outbox, channels (e-mail, webhooks, SMS) and the sender."""
