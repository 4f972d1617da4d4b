"""One module per concept; importing this package registers every table on `db.metadata`."""
from portal.models.audit import AuditEntry
from portal.models.bookings import (
    Booking,
    BookingStatus,
    MakeupCredit,
    Reschedule,
    ResourceBookingDay,
    ResourceBookingTotal,
)
from portal.models.catalog import Package, Resource, ResourceKind
from portal.models.configuration import ApiKey, ConfigProposal, ConfigState, ConfigVersion, ProposalState
from portal.models.credits import (
    GAINS,
    CreditBalance,
    CreditEntry,
    CreditKind,
    LessonPack,
    PackPurchase,
    PackPurchaseStatus,
)
from portal.models.notifications import NotificationLog
from portal.models.operations import DriftFinding, Resolution
from portal.models.payments import (
    EventStatus,
    Payment,
    PaymentFlag,
    PaymentStatus,
    Refund,
    RefundStatus,
    WebhookEvent,
    WebhookSignature,
)
from portal.models.schedule import AvailabilityRule, Blackout
from portal.models.series import BookingSeries
from portal.models.studios import Studio
from portal.models.tokens import AccountToken, TokenPurpose
from portal.models.users import Membership, Role, User
from portal.models.waitlist import WaitlistEntry, WaitlistStatus

__all__ = [
    "AccountToken", "ApiKey", "AuditEntry", "AvailabilityRule", "Blackout", "Booking", "BookingSeries",
    "BookingStatus", "ConfigProposal", "ConfigState", "ConfigVersion", "CreditBalance", "CreditEntry", "CreditKind",
    "DriftFinding", "EventStatus", "GAINS", "LessonPack",
    "PackPurchase", "PackPurchaseStatus", "MakeupCredit", "Membership", "NotificationLog",
    "Package", "Payment", "PaymentFlag", "PaymentStatus", "ProposalState", "Refund", "RefundStatus", "Reschedule",
    "Resolution", "Resource", "ResourceBookingDay", "ResourceBookingTotal", "ResourceKind", "Role", "Studio",
    "TokenPurpose", "User",
    "WaitlistEntry", "WaitlistStatus", "WebhookEvent",
    "WebhookSignature",
]
