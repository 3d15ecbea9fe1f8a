"""PostgreSQL only: the function that records and applies a verified webhook in one call.

``didit_channels.state_postgres`` calls it; it does what the intake and
``state.apply_status_change`` do for a genuine webhook, in the same order and
under the same locks, so a webhook costs one round trip instead of twelve
(measured in bench/: the round trips and the ORM around them were most of a
webhook's cost on PostgreSQL). Other databases get nothing here and use the
Python path.

The function is versioned by name: a change to it is a new function in a new
migration, so this migration always creates what it created the first time.
The advisory-lock key is ``state.EVENT_ORDER_LOCK_KEY`` (0x0D1D17C4), the one
every history insert takes (tests/test_state_postgres.py checks they agree).
"""

from django.db import migrations

FUNCTION_SQL = r"""
CREATE OR REPLACE FUNCTION didit_channels_receive_webhook_v1(
    p_user anyelement,
    p_now timestamptz,
    p_remote_addr inet,
    p_headers jsonb,
    p_raw_body text,
    p_body_size integer,
    p_event_id varchar,
    p_session_id varchar,
    p_status varchar,
    p_webhook_type varchar,
    p_occurred_at timestamptz,
    p_dedupe_key varchar,
    p_source varchar,
    p_workflow_id varchar,
    p_vendor_data varchar,
    p_decision text,
    OUT outcome varchar,
    OUT delivery_id bigint,
    OUT event_id bigint,
    OUT prev_overall bigint,
    OUT prev_owner bigint,
    OUT previous_status varchar,
    OUT created boolean,
    OUT session_pk bigint,
    OUT user_id anyelement,
    OUT session_status varchar,
    OUT session_workflow_id varchar,
    OUT session_vendor_data varchar,
    OUT session_url varchar,
    OUT session_decision_updated_at timestamptz,
    OUT session_last_event_at timestamptz,
    OUT session_created_at timestamptz,
    OUT session_updated_at timestamptz
)
LANGUAGE plpgsql VOLATILE AS $fn$
-- p_user: the resolved owner (NULL: none); used only while the session has none.
-- p_workflow_id, p_vendor_data, p_decision: NULL keeps what the session has.
DECLARE
    s didit_channels_verificationsession%ROWTYPE;
BEGIN
    created := false;
    -- 1. Lock the session row, creating it if new: this serialises every
    --    change to one session. A session that did not exist cannot have
    --    seen this change before, so a new one is written once, complete.
    SELECT * INTO s FROM didit_channels_verificationsession AS vs
        WHERE vs.session_id = p_session_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO didit_channels_verificationsession AS vs (
            session_id, user_id, status, workflow_id, vendor_data, url, decision,
            decision_updated_at, last_event_at, created_at, updated_at)
        VALUES (
            p_session_id, p_user, p_status, coalesce(p_workflow_id, ''),
            coalesce(p_vendor_data, ''), '', p_decision,
            CASE WHEN p_decision IS NULL THEN NULL ELSE p_now END,
            p_occurred_at, p_now, p_now)
        ON CONFLICT (session_id) DO NOTHING
        RETURNING vs.* INTO s;
        IF FOUND THEN
            created := true;
        ELSE
            -- Created by a concurrent transaction, which has committed by now
            -- (ON CONFLICT waited for it); this statement's snapshot sees it.
            SELECT * INTO s FROM didit_channels_verificationsession AS vs
                WHERE vs.session_id = p_session_id FOR UPDATE;
        END IF;
    END IF;

    -- 2. Duplicates (applied before, or recorded as stale before) and stale
    --    changes (older than the newest applied) change nothing.
    IF created THEN
        outcome := 'accepted';
    ELSIF EXISTS (SELECT 1 FROM didit_channels_statusevent AS e
                  WHERE e.dedupe_key = p_dedupe_key)
       OR EXISTS (SELECT 1 FROM didit_channels_webhookdelivery AS d
                  WHERE d.dedupe_key = p_dedupe_key AND d.outcome IN ('accepted', 'stale')) THEN
        outcome := 'duplicate';
    ELSIF s.last_event_at IS NOT NULL AND p_occurred_at < s.last_event_at THEN
        outcome := 'stale';
    ELSE
        -- 3. The change itself.
        outcome := 'accepted';
        previous_status := s.status;
        UPDATE didit_channels_verificationsession AS vs SET
            user_id = coalesce(vs.user_id, p_user),
            status = p_status,
            last_event_at = p_occurred_at,
            workflow_id = coalesce(p_workflow_id, vs.workflow_id),
            vendor_data = coalesce(p_vendor_data, vs.vendor_data),
            decision = coalesce(p_decision, vs.decision),
            decision_updated_at = CASE WHEN p_decision IS NULL
                THEN vs.decision_updated_at ELSE p_now END,
            updated_at = p_now
        WHERE vs.id = s.id
        RETURNING vs.* INTO s;
    END IF;

    -- 4. The delivery, already carrying its outcome.
    INSERT INTO didit_channels_webhookdelivery AS d (
        received_at, remote_addr, headers, raw_body, body_size, signature_valid,
        outcome, error, session_id, event_id, dedupe_key, processed_at)
    VALUES (
        p_now, p_remote_addr, p_headers, p_raw_body, p_body_size, true,
        outcome, '', p_session_id, p_event_id, p_dedupe_key, p_now)
    RETURNING d.id INTO delivery_id;

    -- 5. The history row, last: ids are allocated under the ordering lock,
    --    held until commit, so they become visible in increasing order; and
    --    what was committed before it is read under the same lock.
    IF outcome = 'accepted' THEN
        PERFORM pg_advisory_xact_lock(220010436);
        SELECT max(e.id) INTO prev_overall FROM didit_channels_statusevent AS e;
        IF s.user_id IS NOT NULL THEN
            SELECT max(e.id) INTO prev_owner FROM didit_channels_statusevent AS e
                WHERE e.user_id = s.user_id;
        END IF;
        INSERT INTO didit_channels_statusevent AS e (
            session_id, user_id, status, previous_status, webhook_type, occurred_at,
            recorded_at, dedupe_key, source, delivery_id)
        VALUES (
            s.id, s.user_id, p_status, previous_status, p_webhook_type, p_occurred_at,
            p_now, p_dedupe_key, p_source, delivery_id)
        RETURNING e.id INTO event_id;
    END IF;

    session_pk := s.id;
    user_id := s.user_id;
    session_status := s.status;
    session_workflow_id := s.workflow_id;
    session_vendor_data := s.vendor_data;
    session_url := s.url;
    session_decision_updated_at := s.decision_updated_at;
    session_last_event_at := s.last_event_at;
    session_created_at := s.created_at;
    session_updated_at := s.updated_at;
END
$fn$;
"""

DROP_SQL = "DROP FUNCTION IF EXISTS didit_channels_receive_webhook_v1"


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION_SQL, params=None)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("didit_channels", "0002_verification_admins_group")]

    operations = [migrations.RunPython(create_function, drop_function, elidable=False)]
