"""Didit's session status strings, exactly as Didit sends them.

Unknown strings are stored as received: Didit may add statuses before this
app learns of them, and refusing a webhook would lose the update.
"""

NOT_STARTED = "Not Started"
IN_PROGRESS = "In Progress"
APPROVED = "Approved"
DECLINED = "Declined"
IN_REVIEW = "In Review"
AWAITING_USER = "Awaiting User"
RESUBMITTED = "Resubmitted"
EXPIRED = "Expired"
ABANDONED = "Abandoned"
KYC_EXPIRED = "Kyc Expired"

KNOWN_STATUSES = (
    NOT_STARTED,
    IN_PROGRESS,
    APPROVED,
    DECLINED,
    IN_REVIEW,
    AWAITING_USER,
    RESUBMITTED,
    EXPIRED,
    ABANDONED,
    KYC_EXPIRED,
)

# A decision has been reached (or the session is over); nothing more is expected
# unless Didit reopens it.
FINAL_STATUSES = frozenset({APPROVED, DECLINED, EXPIRED, ABANDONED, KYC_EXPIRED})

STATUS_CHOICES = [(status, status) for status in KNOWN_STATUSES]
