"""Automations: definitions (definition.py), the pure trigger logic (trigger.py) and the messages
(messages.py, templates.py). The dataflow's book (flows/automations.py) wires them to events and
the watermark; docs/automations.md defines everything."""
