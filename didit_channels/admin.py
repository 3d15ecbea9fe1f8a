from django.contrib import admin

from .models import (
    ConnectionTicket,
    DecisionAccess,
    StatusEvent,
    VerificationSession,
    WebhookDelivery,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit data is written by the app only; the admin shows it."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class StatusEventInline(admin.TabularInline):
    model = StatusEvent
    fields = ("id", "previous_status", "status", "webhook_type", "occurred_at", "source")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-id",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(VerificationSession)
class VerificationSessionAdmin(ReadOnlyAdmin):
    list_display = ("session_id", "user", "status", "workflow_id", "updated_at")
    list_filter = ("status", "workflow_id")
    search_fields = ("session_id", "vendor_data", "user__username", "user__email")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    # The decision is personal data: shown only through the audited view.
    fields = (
        "session_id",
        "user",
        "status",
        "workflow_id",
        "vendor_data",
        "url",
        "last_event_at",
        "decision_updated_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    inlines = [StatusEventInline]

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or request.user.has_perm(
            "didit_channels.view_all_sessions"
        )


@admin.register(StatusEvent)
class StatusEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "session", "user", "previous_status", "status", "occurred_at", "source")
    list_filter = ("status", "source", "webhook_type")
    search_fields = ("session__session_id", "user__username")
    list_select_related = ("session", "user")
    raw_id_fields = ("session", "user", "delivery")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("id", "received_at", "outcome", "signature_valid", "session_id", "remote_addr")
    list_filter = ("outcome", "signature_valid")
    search_fields = ("session_id", "event_id")
    # raw_body is personal data, encrypted; not shown in the admin.
    exclude = ("raw_body",)


@admin.register(DecisionAccess)
class DecisionAccessAdmin(ReadOnlyAdmin):
    list_display = ("accessed_at", "username", "session_ref", "via", "remote_addr")
    list_filter = ("via",)
    search_fields = ("username", "session_ref")


@admin.register(ConnectionTicket)
class ConnectionTicketAdmin(ReadOnlyAdmin):
    list_display = ("user", "created_at", "expires_at", "used_at")
    exclude = ("token_hash",)
