"""Notifications: Events (what happened), and the notifier that delivers them to Slack-style
webhooks, CloudEvents receivers and the forge's commit statuses, off the reconcile loop
(docs/notifications.md)."""

from agent.notify._channels import DeliveryError, StatusChannel, WebhookChannel
from agent.notify._config import STATUS_STATES, TYPES, NotifyConfig, NotifyConfigError, TargetConfig, parse_config
from agent.notify._event import EVENT_KINDS, Event, NullSink, Sink, events_of_record
from agent.notify._notifier import JITTER, QUEUE_SIZE, RESULTS, RETRY_DELAYS, Notifier, NotifyMetrics, backoff
from agent.notify._open import open_notifier
from agent.notify._payloads import cloudevent, commit_status, event_type, slack_message, status_context, ui_link

__all__ = ["EVENT_KINDS", "Event", "NullSink", "Sink", "events_of_record", "open_notifier"]
__all__ += ["JITTER", "QUEUE_SIZE", "RESULTS", "RETRY_DELAYS", "STATUS_STATES", "TYPES", "DeliveryError",
            "Notifier", "NotifyConfig", "NotifyConfigError", "NotifyMetrics", "StatusChannel", "TargetConfig",
            "WebhookChannel", "backoff", "cloudevent", "commit_status", "event_type", "parse_config",
            "slack_message", "status_context", "ui_link"]
