"""Notifications: Events (what happened), and the notifier that delivers them to Slack-style
webhooks, CloudEvents receivers and the forge's commit statuses, off the reconcile loop."""

from agent.notify._event import EVENT_KINDS, Event, NullSink, Sink, events_of_record
from agent.notify._open import open_notifier

__all__ = ["EVENT_KINDS", "Event", "NullSink", "Sink", "events_of_record", "open_notifier"]
