from odoo import fields, models


class StratoBenchProbe(models.Model):
    """One row per probe request: the least a webhook that persists what it receives must do."""

    _name = "strato.bench.probe"
    _description = "Bench probe hit"
    _log_access = False

    size = fields.Integer()

    def _noop(self):
        """The probe cron: does nothing, so `_trigger()` can be timed on its own."""
        return True
