from odoo import http
from odoo.http import request


class BenchProbe(http.Controller):
    """Baselines for the webhook, same route options (type http, auth public, no CSRF, no session):
    /strato_bench/ping answers without touching the database (Odoo's trivial public route, the ceiling);
    /strato_bench/write stores the body size with one INSERT and commits; /strato_bench/write_trigger
    does the same and wakes a cron with ir.cron._trigger(), as the webhook does."""

    @http.route("/strato_bench/ping", type="http", auth="public", methods=["GET", "POST"], csrf=False,
                save_session=False)
    def ping(self, **_params):
        return request.make_response("OK", headers=[("Content-Type", "text/plain")])

    @http.route("/strato_bench/write", type="http", auth="public", methods=["GET", "POST"], csrf=False,
                save_session=False)
    def write(self, **_params):
        self._insert()
        return request.make_response("OK", headers=[("Content-Type", "text/plain")])

    @http.route("/strato_bench/write_trigger", type="http", auth="public", methods=["GET", "POST"], csrf=False,
                save_session=False)
    def write_trigger(self, **_params):
        self._insert()
        request.env.ref("strato_bench_probe.ir_cron_probe").sudo()._trigger()
        return request.make_response("OK", headers=[("Content-Type", "text/plain")])

    def _insert(self):
        size = len(request.httprequest.get_data(cache=False))
        request.env.cr.execute("INSERT INTO strato_bench_probe (size) VALUES (%s)", [size])
