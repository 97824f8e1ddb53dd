"""Tool schemas of the example domain, declared once (records say ``"tools": "domain"``)."""

from __future__ import annotations

from typing import Any


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


_DAY = {"type": "string", "description": "ISO date, e.g. 2026-03-02"}

TOOLS: list[dict[str, Any]] = [
    _fn("add_event", "Create a calendar event.", {"title": {"type": "string"}, "day": _DAY,
        "start": {"type": "string", "description": "HH:MM"}, "minutes": {"type": "integer"}},
        ["title", "day", "start"]),
    _fn("list_events", "The events of one day.", {"day": _DAY}, ["day"]),
    _fn("cancel_event", "Delete an event by id.", {"event_id": {"type": "string"}}, ["event_id"]),
    _fn("find_contact", "A contact's email address by name.", {"name": {"type": "string"}}, ["name"]),
    _fn("send_email", "Send an email to a contact.", {"to": {"type": "string"}, "subject": {"type": "string"},
        "body": {"type": "string"}}, ["to", "subject", "body"]),
]
