"""The world of the example domain: two stateful API classes, written as any benchmark would write them.

Nothing here knows about pivotrl. Public methods are the agent's tools (``ObjectSandbox`` exposes them by
name); a refusal is an exception, which the sandbox turns into an error result for the agent. The
classes hold only plain data, so deep copies (snapshots, forks) and the object-graph digest work as is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Event:
    id: str
    title: str
    day: str  # ISO date, "2026-03-02"
    start: str  # "09:30"
    minutes: int


class Calendar:
    """One person's calendar."""

    def __init__(self, events: list[dict[str, Any]] | None = None):
        self.events: dict[str, Event] = {}
        self.next_id = 1
        for e in events or []:
            self.add_event(**e)

    def add_event(self, title: str, day: str, start: str, minutes: int = 30) -> dict[str, Any]:
        """Create an event; refuses an overlap with another event of the same day."""
        if not 5 <= minutes <= 480:
            raise ValueError(f"minutes must be between 5 and 480, got {minutes}")
        begin = _minutes(start)
        for e in self.events.values():
            if e.day == day and begin < _minutes(e.start) + e.minutes and _minutes(e.start) < begin + minutes:
                raise ValueError(f"overlaps {e.title!r} at {e.start}")
        event = Event(f"ev{self.next_id}", title, day, start, minutes)
        self.events[event.id] = event
        self.next_id += 1
        return asdict(event)

    def list_events(self, day: str) -> list[dict[str, Any]]:
        """The events of one day, by start time."""
        return [asdict(e) for e in sorted(self.events.values(), key=lambda e: e.start) if e.day == day]

    def cancel_event(self, event_id: str) -> dict[str, Any]:
        """Delete an event by id."""
        if event_id not in self.events:
            raise KeyError(f"no event {event_id!r}")
        return {"cancelled": asdict(self.events.pop(event_id))}


class Mailbox:
    """Contacts and the mail sent from this account."""

    def __init__(self, contacts: dict[str, str] | None = None):
        self.contacts = dict(contacts or {})
        self.sent: list[dict[str, str]] = []

    def find_contact(self, name: str) -> dict[str, str]:
        """A contact's address by name (case-insensitive)."""
        for known, address in self.contacts.items():
            if known.lower() == name.strip().lower():
                return {"name": known, "email": address}
        raise KeyError(f"no contact named {name!r}")

    def send_email(self, to: str, subject: str, body: str) -> dict[str, Any]:
        """Send a mail to a known address."""
        if to not in self.contacts.values():
            raise ValueError(f"{to!r} is not one of your contacts")
        self.sent.append({"to": to, "subject": subject, "body": body})
        return {"sent": len(self.sent)}


def _minutes(hhmm: str) -> int:
    hours, _, minutes = hhmm.partition(":")
    return int(hours) * 60 + int(minutes)


def build_world(state: dict[str, Any]) -> dict[str, Any]:
    """The roots of a fresh world from a record's ``env``: ``{"calendar": Calendar, "mail": Mailbox}``."""
    return {"calendar": Calendar(state.get("events")), "mail": Mailbox(state.get("contacts"))}
