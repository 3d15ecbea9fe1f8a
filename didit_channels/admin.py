import json

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext_lazy as _

from .audit import can_view_decision, read_decision
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

    # --- identity data: audited view and erasure (see didit_channels.audit/retention) ---
    actions = ["erase_verification_data", "refetch_decision", "resend_status"]

    def get_queryset(self, request):
        # Pages list sessions, never their decision: don't decrypt one per row.
        return super().get_queryset(request).defer("decision")

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        decision_url = path(
            "<path:object_id>/decision/",
            self.admin_site.admin_view(self.decision_view),
            name="{}_{}_decision".format(*info),
        )
        # Before the defaults: their "<path:object_id>/" catch-all would swallow it.
        return [decision_url, *super().get_urls()]

    def decision_view(self, request, object_id):
        """The decision of one session, for holders of view_decision; every read audited."""
        if not can_view_decision(request.user):
            raise PermissionDenied
        session = self.get_object(request, unquote(object_id))
        if session is None:
            raise Http404
        decision = read_decision(session, request, via="admin")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": session,
            "title": _("Decision of %(session)s") % {"session": session.session_id},
            "decision_json": None
            if decision is None
            else json.dumps(decision, indent=2, ensure_ascii=False, sort_keys=True),
        }
        response = TemplateResponse(
            request, "admin/didit_channels/verificationsession/decision.html", context
        )
        add_never_cache_headers(response)
        return response

    def has_erase_permission(self, request):
        # Sessions are never deleted through the admin, so "delete" is free to
        # mean "may erase their identity data"; grant it to your DPO group.
        return request.user.has_perm("didit_channels.delete_verificationsession")

    @admin.action(
        description=_("Erase verification data of the selected sessions' users"),
        permissions=["erase"],
    )
    def erase_verification_data(self, request, queryset):
        from .retention import erase_sessions

        user_model = VerificationSession._meta.get_field("user").related_model
        users = list(
            user_model._default_manager.filter(
                pk__in=queryset.exclude(user=None).values("user")
            ).order_by("pk")
        )
        unassigned = list(queryset.filter(user=None).order_by("pk"))
        sessions = VerificationSession.objects.filter(
            Q(user__in=[user.pk for user in users]) | Q(pk__in=[s.pk for s in unassigned])
        )
        if request.POST.get("post") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": _("Erase verification data?"),
                "queryset": queryset,
                "users": users,
                "unassigned": unassigned,
                "session_count": sessions.count(),
                "action_name": "erase_verification_data",
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request,
                "admin/didit_channels/verificationsession/erase_confirmation.html",
                context,
            )
        report = erase_sessions(sessions)
        names = ", ".join(user.get_username() for user in users) or "-"
        self.message_user(
            request,
            _(
                "Erased the verification data of %(users)d user(s) (%(names)s) and "
                "%(unassigned)d unassigned session(s): %(summary)s"
            )
            % {
                "users": len(users),
                "names": names,
                "unassigned": len(unassigned),
                "summary": report.summary(),
            },
        )
        return None

    # --- operators: re-fetch from Didit, re-send to sockets (see didit_channels.desk) ---
    # Each re-fetch is one call to Didit made while the admin waits.
    REFETCH_LIMIT = 50

    def has_live_permission(self, request):
        return request.user.has_perm("didit_channels.view_all_sessions")

    @admin.action(
        description=_("Re-fetch the decision from Didit for the selected sessions"),
        permissions=["live"],
    )
    def refetch_decision(self, request, queryset):
        from .client import DiditAPIError, DiditClient, DiditNotConfigured
        from .desk import refetch_decision
        from .state import ApplyResult

        sessions = list(queryset.order_by("pk")[: self.REFETCH_LIMIT + 1])
        if len(sessions) > self.REFETCH_LIMIT:
            self.message_user(
                request,
                _("Select at most %(limit)d sessions to re-fetch at once.")
                % {"limit": self.REFETCH_LIMIT},
                messages.ERROR,
            )
            return
        try:
            client = DiditClient.from_settings()
        except DiditNotConfigured as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        changed, unchanged, failed = [], [], []
        with client:
            for session in sessions:
                try:
                    applied = refetch_decision(session, client)
                except DiditAPIError as exc:
                    failed.append(f"{session.session_id} ({exc})")
                    continue
                if applied.result is ApplyResult.APPLIED:
                    changed.append(f"{session.session_id}: {applied.session.status}")
                else:
                    unchanged.append(session.session_id)
        if changed:
            self.message_user(
                request, _("Re-fetched from Didit: %s") % ", ".join(changed), messages.SUCCESS
            )
        if unchanged:
            self.message_user(
                request,
                _("Not applied (a newer change is already recorded): %s") % ", ".join(unchanged),
                messages.WARNING,
            )
        if failed:
            self.message_user(
                request, _("Could not re-fetch: %s") % "; ".join(failed), messages.ERROR
            )

    @admin.action(
        description=_("Re-send the current status to the owner's open pages"),
        permissions=["live"],
    )
    def resend_status(self, request, queryset):
        from .desk import resend_status

        sent = skipped = 0
        for session in queryset.order_by("pk"):
            if resend_status(session):
                sent += 1
            else:
                skipped += 1
        self.message_user(
            request,
            _("Re-sent the current status of %(sent)d session(s).") % {"sent": sent},
            messages.SUCCESS,
        )
        if skipped:
            self.message_user(
                request,
                _("%(skipped)d session(s) have no recorded status change to send.")
                % {"skipped": skipped},
                messages.WARNING,
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
