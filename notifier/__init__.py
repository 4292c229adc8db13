"""The notifier: the durable outbox of automation actions and their delivery (docs/notifier.md)."""
