from .audit import DecisionAccess
from .deliveries import WebhookDelivery
from .sessions import StatusEvent, VerificationSession
from .tickets import ConnectionTicket

__all__ = [
    "ConnectionTicket",
    "DecisionAccess",
    "StatusEvent",
    "VerificationSession",
    "WebhookDelivery",
]
