"""Signals the app sends. Connect receivers in your AppConfig.ready().

Receivers run inside the transaction that applied the change; use
``transaction.on_commit`` in a receiver for side effects that must not happen
if it rolls back.
"""

from django.dispatch import Signal

# A session's status changed (sent once per applied change, never for
# duplicates or stale deliveries).
# Arguments: sender (VerificationSession class), session (VerificationSession),
#   event (StatusEvent, the history row), previous_status (str | None),
#   source ("webhook", "reconcile", "api", ...)
session_status_changed = Signal()

# A webhook request was judged. Sent for every delivery, whatever its outcome.
# Arguments: sender (WebhookDelivery class), delivery (WebhookDelivery),
#   outcome (str, a DeliveryOutcome value)
webhook_received = Signal()
