from datetime import timedelta

from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from odoo import api, fields, models

# Advisory lock between the webhook requests that skip waking the cron and the run that consumes the
# wake-ups; the value only has to be unique to this use in the database.
WAKE_LOCK_KEY = 0x57A7_0057_A4EB
# A wake-up no run has consumed after this long is assumed lost (a run that failed): the next POST wakes
# the cron again. Runs consume them at least every RUN_SECONDS while they work.
WAKE_STALE_SECONDS = 60


class StratoWhatsappWebhookWakeup(models.Model):
    """When a webhook POST woke the processing cron, if no run has started consuming events since.

    Waking the cron with ``ir.cron._trigger()`` on every POST would cost more than the rest of the request
    (a trigger row, and a NOTIFY over a new connection to the ``postgres`` database), so only the POST
    that finds no wake-up requested since the last run started triggers the cron. This is one of the ORM
    shortcuts kept for speed, fenced here: a single row, read and written with SQL only, by two methods.

    - ``_store_and_wake`` (a POST): stores the event under an advisory lock held *shared* from the check
      until the request commits, and wakes the cron only if no wake-up is pending.
    - ``_start_epoch`` (a processing run, before it claims events): clears the request under the same
      lock held *exclusively*, and commits. A POST that relied on an earlier wake-up has committed its
      event by then, so the claims that follow see it.

    A wake-up left unconsumed for ``WAKE_STALE_SECONDS`` (its run failed) is made again.
    """

    _name = "strato.whatsapp.webhook.wakeup"
    _description = "WhatsApp Webhook Processing Wake-up"
    _log_access = False

    requested_at = fields.Datetime(readonly=True)

    def init(self):
        self.env.cr.execute("""
            INSERT INTO strato_whatsapp_webhook_wakeup (id)
            SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM strato_whatsapp_webhook_wakeup)
        """)

    @api.model
    def _store_and_wake(self, insert_query, params, cron):
        """Run ``insert_query`` (an INSERT ... RETURNING id) under the POST's side of the protocol and wake
        the cron ``cron()`` returns if no wake-up is pending; returns the inserted id, or None when nothing
        was inserted. ``cron`` is only called then: looking it up first would start the transaction
        before the statement below could choose its isolation.

        In the usual case this is one statement. Under READ COMMITTED (set here when the transaction
        starts with this statement), the INSERT sees every clearing committed before the lock was granted.
        """
        now = fields.Datetime.now()
        cr = self.env.cr
        cr.execute(self._read_committed_prefix(cr) + f"""
            SELECT pg_advisory_xact_lock_shared(%s);
            {insert_query}, (SELECT requested_at > %s FROM strato_whatsapp_webhook_wakeup WHERE id = 1)
        """, [WAKE_LOCK_KEY, *params, now - timedelta(seconds=WAKE_STALE_SECONDS)])
        stored = cr.fetchone()
        if not stored:
            return None
        inserted_id, wake_pending = stored
        if not wake_pending:
            # Of POSTs racing here, the first to update the row wakes the cron; the others see its value.
            cr.execute("""
                UPDATE strato_whatsapp_webhook_wakeup SET requested_at = %s
                 WHERE id = 1 AND (requested_at IS NULL OR requested_at <= %s)
             RETURNING id
            """, [now, now - timedelta(seconds=WAKE_STALE_SECONDS)])
            if cr.fetchone():
                cron()._trigger()
        return inserted_id

    @api.model
    def _start_epoch(self, commit):
        """Clear the wake-up request under the exclusive lock, then ``commit()``: every event whose POST
        relied on that request is visible to the claims that follow. The cron's triggers are left to Odoo."""
        cr = self.env.cr
        commit()  # a new transaction, which READ COMMITTED can then apply to
        cr.execute(self._read_committed_prefix(cr) + """
            SELECT pg_advisory_xact_lock(%s);
            UPDATE strato_whatsapp_webhook_wakeup SET requested_at = NULL WHERE id = 1 AND requested_at IS NOT NULL;
        """, [WAKE_LOCK_KEY])
        commit()

    @api.model
    def _requested(self):
        """Whether a POST asked for a run since the last ``_start_epoch``."""
        self.env.cr.execute("SELECT requested_at IS NOT NULL FROM strato_whatsapp_webhook_wakeup WHERE id = 1")
        row = self.env.cr.fetchone()
        return bool(row and row[0])

    @api.model
    def _read_committed_prefix(self, cr):
        """SQL to put first in the statement that starts ``cr``'s next transaction, for it to run under
        READ COMMITTED; empty when the transaction has already started (test cursors)."""
        return "SET TRANSACTION ISOLATION LEVEL READ COMMITTED;" if self._transaction_idle(cr) else ""

    @api.model
    def _transaction_idle(self, cr):
        """Whether ``cr``'s next statement starts a new transaction (whose isolation can still be set)."""
        connection = getattr(cr, "_cnx", None)
        return connection is not None and connection.info.transaction_status == TRANSACTION_STATUS_IDLE
