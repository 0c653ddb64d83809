import logging
import os
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from odoo import _, api, fields, models, tools
from odoo.exceptions import UserError, ValidationError

from .. import const
from ..tools import graph_api, graph_errors

_logger = logging.getLogger(__name__)

WEBHOOK_ROUTE = "/api/webhooks/whatsapp"

# Environment variables of the original design, and the account field each one fills.
ENVIRONMENT_FIELDS = {
    "WHATSAPP_PHONE_NUMBER_ID": "phone_number_id",
    "WHATSAPP_ACCESS_TOKEN": "access_token",
    "WHATSAPP_VERIFY_TOKEN": "verify_token",
    "WHATSAPP_BUSINESS_ACCOUNT_ID": "business_account_id",
    "WHATSAPP_APP_SECRET": "app_secret",
    "WHATSAPP_APP_ID": "app_id",
    "WHATSAPP_GRAPH_API_URL": "graph_api_url",
    "WHATSAPP_GRAPH_API_VERSION": "graph_api_version",
}

# Where an account's API calls may go without a system administrator: Meta's Graph API and the official
# endpoints of the providers agencies buy from. The access token travels with every call, so any other
# host (a proxy of the agency's, the local simulator on loopback) is a system administrator's decision:
# otherwise a WhatsApp administrator could send the token to, and read answers from, internal addresses.
TRUSTED_API_HOSTS = frozenset({
    "graph.facebook.com",
    "waba-v2.360dialog.io", "waba.360dialog.io", "hub.360dialog.io",
    "api.twilio.com", "content.twilio.com",
    "api.wazzapi.com",
})


def _new_verify_token():
    return secrets.token_urlsafe(24)

# Meta's quality rating of a phone number ("NA" and anything new read as not rated yet).
QUALITY_RATINGS = [
    ("GREEN", "High"),
    ("YELLOW", "Medium"),
    ("RED", "Low"),
    ("UNKNOWN", "Not Rated Yet"),
]

class StratoWhatsappAccount(models.Model):
    _name = "strato.whatsapp.account"
    _description = "WhatsApp Business Account"
    _inherit = ["mail.thread", "mail.activity.mixin"]
    _order = "sequence, name, id"
    _check_company_auto = True

    name = fields.Char(required=True, tracking=True)
    active = fields.Boolean(default=True, tracking=True)
    sequence = fields.Integer(default=10)
    company_id = fields.Many2one(
        "res.company", required=True, default=lambda self: self.env.company, index=True, tracking=True)
    phone_number_id = fields.Char(
        "Phone Number ID", required=True, tracking=True, index=True,
        help="The phone number's id in Meta's WhatsApp Manager (API Setup). Webhooks are routed by it.")
    business_account_id = fields.Char(
        "WhatsApp Business Account ID", tracking=True,
        help="The WABA id; templates are listed and created under it.")
    app_id = fields.Char(
        "Meta App ID", help="Needed to upload example media when submitting templates with a media header.")
    access_token = fields.Char(
        groups="strato_whatsapp.group_whatsapp_admin", copy=False,
        help="A permanent System User token with whatsapp_business_messaging and "
             "whatsapp_business_management permissions.")
    app_secret = fields.Char(
        groups="strato_whatsapp.group_whatsapp_admin", copy=False,
        help="The Meta app's secret. Webhook signatures are checked with it; without it the webhook "
             "refuses this number's messages.")
    verify_token = fields.Char(
        copy=False, default=lambda self: _new_verify_token(),
        groups="strato_whatsapp.group_whatsapp_admin",
        help="Any secret string; paste the same value in Meta's webhook configuration.")
    graph_api_url = fields.Char(
        "Graph API URL", required=True, default=const.DEFAULT_GRAPH_API_URL,
        help="Meta's Graph API, or a Business Solution Provider or the local simulator.")
    graph_api_version = fields.Char(
        "Graph API Version", required=True, default=const.DEFAULT_GRAPH_API_VERSION,
        help="Meta supports each version for about two years; keep a current one.")
    webhook_url = fields.Char("Webhook URL", compute="_compute_webhook_url")
    webhook_accepts_posts = fields.Boolean(
        "Webhook Accepts Messages", compute="_compute_webhook_accepts_posts",
        help="Messages are only accepted when their signature can be checked with the App Secret.")
    display_phone_number = fields.Char("Phone Number", readonly=True, copy=False)
    verified_name = fields.Char(readonly=True, copy=False)
    quality_rating = fields.Selection(
        QUALITY_RATINGS, readonly=True, copy=False,
        help="Meta's rating of the messages this number sent lately, from how contacts received them "
             "(blocks, reports). A low rating limits how many people the number may write to.")
    team_id = fields.Many2one(
        "crm.team", "Sales Team for New Leads", check_company=True,
        help="Leads created from messages of unknown numbers go to this team (else the company's default team).")
    user_id = fields.Many2one(
        "res.users", "Salesperson for New Leads", check_company=True,
        help="Leads created from messages of unknown numbers go to this salesperson. Leave empty to let CRM's "
             "rule-based assignment choose (when it is on), or the people below take them.")
    notify_user_ids = fields.Many2many(
        "res.users", "strato_whatsapp_account_notify_user_rel", "account_id", "user_id",
        string="Tell About New Contacts", domain=[("share", "=", False)],
        help="When a new contact's lead has no salesperson, these users get an activity to answer or assign "
             "it (when empty: the sales team's leader, else the WhatsApp administrators).")
    messages_per_second = fields.Integer(
        "Messages per Second", default=80, required=True,
        help="Sending never goes faster. Meta's standard tier is 80; numbers shared with the WhatsApp "
             "Business app allow 20; higher tiers up to 1,000.")
    token_invalid = fields.Boolean(
        "Token Needs Renewal", readonly=True, copy=False, tracking=True,
        help="Meta refused the access token. Nothing is sent from this number until a new token is saved.")
    sending_stopped_reason = fields.Char(
        readonly=True, copy=False, tracking=True,
        help="Meta refused this number's messages (permission, restriction): nothing is sent until an "
             "administrator fixes it and resumes sending.")
    conversation_ids = fields.One2many("strato.whatsapp.conversation", "account_id")
    conversation_count = fields.Integer(compute="_compute_conversation_count")
    template_count = fields.Integer(compute="_compute_template_count")
    send_read_receipts = fields.Boolean(
        "Send Read Receipts", default=False,
        help="When an agent opens a chat, tell WhatsApp the contact's messages were read (blue ticks on "
             "their phone). Sent in the background.")
    # Health, at a glance on the form.
    last_webhook_at = fields.Datetime("Last Webhook Received", compute="_compute_health")
    failed_message_count_24h = fields.Integer("Messages Failed (24 h)", compute="_compute_health")
    failed_event_count_24h = fields.Integer("Webhooks Failed (24 h)", compute="_compute_health")

    _sql_constraints = [
        # Phone number ids are global at Meta, and webhooks are routed by them: the same id in two
        # companies would hand one company's customers' messages to the other.
        ("phone_number_id_uniq", "unique(phone_number_id)",
         "This phone number id is already configured (perhaps in another company): a WhatsApp number "
         "can be connected once."),
    ]

    @api.depends_context("company")
    def _compute_webhook_url(self):
        # sudo: reads the server's public address, a system parameter users cannot read.
        base_url = self.env["ir.config_parameter"].sudo().get_param("web.base.url", "")
        for account in self:
            account.webhook_url = base_url.rstrip("/") + WEBHOOK_ROUTE

    @api.depends("app_secret")
    def _compute_webhook_accepts_posts(self):
        # sudo: only whether a secret is set leaves this method, not the secret.
        secrets_by_id = {account.id: account.app_secret for account in self.sudo()}
        for account in self:
            account.webhook_accepts_posts = bool(secrets_by_id.get(account.id))

    def _compute_conversation_count(self):
        counts = dict(self.env["strato.whatsapp.conversation"]._read_group(
            [("account_id", "in", self.ids)], ["account_id"], ["__count"]))
        for account in self:
            account.conversation_count = counts.get(account, 0)

    def _compute_health(self):
        since = fields.Datetime.now() - timedelta(hours=24)
        # Webhook events are administrators' records.
        # sudo: only counts for accounts the caller can read leave here.
        events = self.env["strato.whatsapp.webhook.event"].sudo()
        last_webhooks = dict(events._read_group([("account_id", "in", self.ids)], ["account_id"], ["create_date:max"]))
        failed_events = dict(events._read_group(
            [("account_id", "in", self.ids), ("state", "=", "failed"), ("create_date", ">=", since)],
            ["account_id"], ["__count"]))
        # sudo: counts only, for accounts the caller can read; the messages may be on others' leads.
        failed_messages = dict(self.env["strato.whatsapp.message"].sudo()._read_group(
            [("account_id", "in", self.ids), ("state", "=", "failed"), ("failed_at", ">=", since)],
            ["account_id"], ["__count"]))
        for account in self:
            account.last_webhook_at = last_webhooks.get(account._origin, False)
            account.failed_event_count_24h = failed_events.get(account._origin, 0)
            account.failed_message_count_24h = failed_messages.get(account._origin, 0)

    def _compute_template_count(self):
        counts = dict(self.env["strato.whatsapp.template"]._read_group(
            [("account_id", "in", self.ids)], ["account_id"], ["__count"]))
        for account in self:
            account.template_count = counts.get(account, 0)

    @api.constrains("graph_api_version")
    def _check_graph_api_version(self):
        for account in self:
            status = graph_api.api_version_status(account.graph_api_version)
            if status == const.API_VERSION_INVALID:
                raise ValidationError(_("The Graph API version must look like v25.0."))
            if status != const.API_VERSION_SUPPORTED:
                raise ValidationError(_(
                    "Graph API %(version)s is expired or about to expire at Meta; use %(default)s.",
                    version=account.graph_api_version, default=const.DEFAULT_GRAPH_API_VERSION))

    @api.constrains("phone_number_id", "business_account_id", "app_id")
    def _check_meta_ids(self):
        # These ids become parts of the API's paths: anything but digits (a "/", a "#", "..") would send
        # the account's token to another path of the host.
        for account in self:
            for fname in ("phone_number_id", "business_account_id", "app_id"):
                if account[fname] and not account[fname].isdigit():
                    raise ValidationError(_("The %s is a number, as Meta shows it (digits only).",
                                            self._fields[fname].string))

    @api.constrains("messages_per_second")
    def _check_messages_per_second(self):
        if any(not 1 <= account.messages_per_second <= 1000 for account in self):
            raise ValidationError(_("Messages per second must be between 1 and 1,000 (Meta's highest tier)."))

    @api.constrains("graph_api_url")
    def _check_graph_api_url(self):
        for account in self:
            self._check_api_url(account.graph_api_url)

    @api.model
    def _check_api_url(self, url):
        """The API base is a scheme, a host and a port, nothing else (a path, a query or a ``#`` would
        change where the calls go); a host other than Meta's or a provider's needs a system administrator."""
        try:
            parts = urlsplit(url or "")
            port = parts.port
        except ValueError:
            parts, port = None, None
        if not parts or parts.scheme not in ("https", "http") or not parts.hostname \
                or parts.username is not None or parts.password is not None \
                or parts.path not in ("", "/") or parts.query or parts.fragment or "#" in url or "?" in url:
            raise ValidationError(_("The Graph API URL is an address such as https://graph.facebook.com: "
                                    "https://, a host name and, if needed, a port; nothing after it."))
        trusted = parts.hostname.lower() in TRUSTED_API_HOSTS and parts.scheme == "https" and port in (None, 443)
        if not trusted and not self.env.is_system():
            raise ValidationError(_("Only a system administrator can point a WhatsApp account at %s: the "
                                    "account's access token is sent there. Use Meta's address "
                                    "(https://graph.facebook.com) or your provider's.", parts.hostname))

    @api.model
    @tools.ormcache()
    def _active_verify_tokens(self):
        # sudo: webhook handshake (public route): tokens are compared, never returned to the caller.
        return tuple(token for token in self.sudo().search([]).mapped("verify_token") if token)

    @api.model
    def _webhook_candidates(self, phone_number_ids, waba_ids, limit=64):
        """((account id, app secret), ...) of the active accounts a webhook body may be for.

        Messages and statuses name their phone number; template events only their WABA. Only accounts
        with an app secret can be candidates: without it no signature can be checked. The ids come from
        an unauthenticated body, so they are only looked up in the cached routing map, never in SQL, and
        only the first ``limit`` of them (a real body names one number); de-duplicated in linear time.
        """
        by_phone_number, by_waba = self._webhook_routing()
        table, keys = (by_phone_number, phone_number_ids) if phone_number_ids else (by_waba, waba_ids)
        found = {}
        for key in keys[:limit]:
            for candidate in table.get(key, ()):
                found[candidate] = None
        return tuple(found)

    @api.model
    @tools.ormcache()
    def _webhook_routing(self):
        """({phone number id: candidates}, {WABA id: candidates}); cached, as this runs on every webhook
        POST and accounts change rarely (any account write clears it)."""
        by_phone_number, by_waba = {}, {}
        # sudo: webhook routing (public route): the secrets only check signatures and never leave the server.
        for account in self.sudo().search([("app_secret", "!=", False)]):
            candidate = (account.id, account.app_secret)
            by_phone_number.setdefault(account.phone_number_id, []).append(candidate)
            if account.business_account_id:
                by_waba.setdefault(account.business_account_id, []).append(candidate)
        return by_phone_number, by_waba

    @api.model_create_multi
    def create(self, vals_list):
        self.env.registry.clear_cache()
        for vals in vals_list:
            self._normalize_vals(vals)
            if not vals.get("verify_token"):
                vals["verify_token"] = _new_verify_token()
        return super().create(vals_list)

    def write(self, vals):
        self.env.registry.clear_cache()
        self._normalize_vals(vals)
        if "verify_token" in vals and not vals["verify_token"]:
            vals["verify_token"] = _new_verify_token()
        if vals.get("access_token"):
            vals.setdefault("token_invalid", False)
            vals.setdefault("sending_stopped_reason", False)
        return super().write(vals)

    @api.model
    def _normalize_vals(self, vals):
        for fname in ("phone_number_id", "business_account_id", "app_id", "access_token", "app_secret",
                      "graph_api_version"):
            if isinstance(vals.get(fname), str):
                vals[fname] = vals[fname].strip()
        if vals.get("graph_api_version"):
            try:
                vals["graph_api_version"] = graph_api.normalize_api_version(vals["graph_api_version"])
            except ValueError:
                pass  # left as typed: the constraint explains what is expected
        if isinstance(vals.get("graph_api_url"), str):
            vals["graph_api_url"] = vals["graph_api_url"].strip().rstrip("/").lower()

    def unlink(self):
        self.env.registry.clear_cache()
        return super().unlink()

    def _graph_client(self):
        """The Graph API client for this account (credentials read as superuser: no user ever sees them)."""
        self.ensure_one()
        # sudo: the credentials go to the API client only; the callers checked the right to send or to manage.
        account = self.sudo()
        if not account.access_token:
            raise UserError(_("The WhatsApp account %s has no access token yet.", account.name))
        return graph_api.GraphApiClient(
            account.phone_number_id, account.access_token,
            api_url=account.graph_api_url, api_version=account.graph_api_version,
            waba_id=account.business_account_id or None, app_id=account.app_id or None)

    def _check_manage(self):
        """Administrators' buttons: the caller may change this account (WhatsApp administrator of its
        company). Checked before anything else, as the buttons then work as superuser and call Meta."""
        self.check_access("write")

    def action_test_connection(self):
        """Ask Meta for the phone number's details and tell the user, in plain words, what happened."""
        self.ensure_one()
        self._check_manage()
        try:
            info = self._graph_client().get_phone_number_info()
        except graph_errors.GraphApiError as error:
            if isinstance(error, graph_errors.AuthError):
                self.sudo().token_invalid = True  # sudo: _check_manage passed; the flag is read-only in the form
            return self._notification(_("Connection failed"), self._explain_error(error), "danger")
        # sudo: _check_manage passed; these fields are read-only in the form, Meta's answer fills them.
        self.sudo().write({
            "display_phone_number": info.get("display_phone_number"),
            "verified_name": info.get("verified_name"),
            "quality_rating": self._quality_rating(info.get("quality_rating")),
            "token_invalid": False,
        })
        message = _("Connected to %(name)s (%(number)s). Quality rating: %(quality)s.",
                    name=info.get("verified_name") or "?", number=info.get("display_phone_number") or "?",
                    quality=dict(self._fields["quality_rating"]._description_selection(self.env))[
                        self._quality_rating(info.get("quality_rating"))])
        action = self._notification(_("Connection works"), message, "success")
        action["params"]["next"] = {"type": "ir.actions.client", "tag": "soft_reload"}
        return action

    @api.model
    def _quality_rating(self, value):
        """Meta's rating as one of ours: an unexpected value (Meta adds some) reads as "not rated"."""
        value = str(value or "").upper()
        return value if value in dict(QUALITY_RATINGS) else "UNKNOWN"

    @api.model
    def _explain_error(self, error):
        """A sentence an administrator can act on, for a Graph API error."""
        if isinstance(error, graph_errors.AuthError):
            return _("Meta refused the access token: it is wrong or has expired. Paste a new one.")
        if isinstance(error, graph_errors.GraphPermissionError):
            return _("The token has no permission on this phone number. Check the System User's assets "
                     "and its whatsapp_business_messaging permission.")
        # Only the error's own message and code: never the body of an answer (which, from a host that is
        # not Meta's, could be anything the host serves).
        # Meta's own error objects carry a code, and their details say what to fix.
        summary = error.message
        if error.code is not None:
            summary += (f": {error.details}" if error.details and error.details not in summary else "") + f" ({error.code})"
        if isinstance(error, graph_errors.RetryableError):
            return _("Meta could not be reached or is busy (%s). Try again in a minute.", summary)
        return _("Meta answered with an error: %s", summary)

    @api.model
    def _notification(self, title, message, kind):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"title": title, "message": message, "type": kind, "sticky": kind == "danger"},
        }

    @api.model
    def _default_for(self, company):
        """The account messages of ``company``'s leads go out from when none is chosen."""
        return self.search([("company_id", "=", company.id or self.env.company.id)], limit=1)

    def _can_send(self):
        self.ensure_one()
        # sudo: the token is only tested for presence.
        account = self.sudo()
        return bool(account.access_token) and not account.token_invalid and not account.sending_stopped_reason

    def _stop_sending(self, error):
        """Stop this account after Meta refused it; administrators are told once, not at every cron run."""
        self.ensure_one()
        if not self._can_send():
            return
        if isinstance(error, graph_errors.AuthError):
            self.token_invalid = True
        else:
            self.sending_stopped_reason = self._explain_error(error)
        self._notify_sending_blocked(error)

    def action_resume_sending(self):
        self._check_manage()
        self.sudo().write({"sending_stopped_reason": False})  # sudo: _check_manage passed; read-only field
        # sudo: the send cron is the addon's own; waking it sends nothing the queue would not send anyway.
        self.env.ref("strato_whatsapp.ir_cron_whatsapp_send").sudo()._trigger()

    def _notify_sending_blocked(self, error):
        """Meta refuses this account: tell its administrators once, in plain words, on the account."""
        self.ensure_one()
        explanation = self._explain_error(error)
        self.message_post(body=_("Sending is stopped for this number: %s Queued messages wait and go out "
                                 "once it is fixed.", explanation), subtype_xmlid="mail.mt_note")
        admins = self.env.ref("strato_whatsapp.group_whatsapp_admin").users.filtered(
            lambda user: not user.share and self.company_id in user.company_ids and user.id != self.env.ref("base.user_root").id)
        for admin in admins[:5]:
            self.activity_schedule("mail.mail_activity_data_warning", user_id=admin.id,
                                   summary=_("WhatsApp sending stopped"), note=explanation)

    def action_regenerate_verify_token(self):
        self._check_manage()
        self.write({"verify_token": _new_verify_token()})

    def action_open_conversations(self):
        self.ensure_one()
        self.check_access("read")
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "strato_whatsapp.strato_whatsapp_conversation_action")
        action["domain"] = [("account_id", "=", self.id)]
        return action

    def action_sync_templates(self):
        """Bring this number's templates in line with Meta (the template model does the work)."""
        self.ensure_one()
        self._check_manage()
        self.env["strato.whatsapp.template"].check_access("write")
        return self.env["strato.whatsapp.template"]._action_sync_account(self)

    def action_open_failed_messages(self):
        self.ensure_one()
        self.check_access("read")
        action = self.env["ir.actions.act_window"]._for_xml_id("strato_whatsapp.strato_whatsapp_message_action")
        action["domain"] = [("account_id", "=", self.id), ("state", "=", "failed"),
                            ("failed_at", ">=", fields.Datetime.now() - timedelta(hours=24))]
        action["context"] = {}
        return action

    def action_open_failed_events(self):
        self.ensure_one()
        self.check_access("read")
        action = self.env["ir.actions.act_window"]._for_xml_id("strato_whatsapp.strato_whatsapp_webhook_event_action")
        action["domain"] = [("account_id", "=", self.id), ("state", "=", "failed")]
        return action

    def action_open_templates(self):
        self.ensure_one()
        self.check_access("read")
        action = self.env["ir.actions.act_window"]._for_xml_id("strato_whatsapp.strato_whatsapp_template_action")
        action["domain"] = [("account_id", "=", self.id)]
        action["context"] = {"default_account_id": self.id}
        return action

    @api.model
    def _sync_from_environment(self, environ=None):
        """Create or update the account described by the WHATSAPP_* environment variables, if any.

        The original design configured a single number through the environment; such deployments keep
        working, and the values they set win over edits made in the form.
        """
        environ = os.environ if environ is None else environ
        # sudo: reads a system parameter at server start.
        if self.env["ir.config_parameter"].sudo().get_param("database.is_neutralized"):
            # A neutralized copy (staging) started with production's variables must not get production's
            # token back: it would send real messages to real customers.
            _logger.info("WhatsApp environment variables ignored: this database is neutralized")
            return self.browse()
        vals = {fname: environ[var].strip() for var, fname in ENVIRONMENT_FIELDS.items() if environ.get(var, "").strip()}
        if not (vals.get("phone_number_id") and vals.get("access_token")):
            return self.browse()
        # sudo: run at server start from the server's own environment, not from a user's request.
        accounts = self.sudo().with_context(active_test=False)
        account = accounts.search([("phone_number_id", "=", vals["phone_number_id"])], limit=1)
        if account:
            changed = {fname: value for fname, value in vals.items() if account[fname] != value}
            if changed:
                account.write(changed)
            return account
        vals.setdefault("name", _("WhatsApp %s", vals["phone_number_id"]))
        _logger.info("WhatsApp account for phone number id %s created from the environment", vals["phone_number_id"])
        return accounts.create(vals)

    def _register_hook(self):
        super()._register_hook()
        if os.environ.get("WHATSAPP_PHONE_NUMBER_ID"):
            self._sync_from_environment()
