"""The Graph API simulator (devtools/graph_simulator) and a raw loopback server for the client's tests:
providers of the arguments their test functions name (``FIXTURES``, used by ``unit_cases.gather``)."""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from ..tools.graph_api import GraphApiClient

DEVTOOLS = Path(__file__).resolve().parents[2] / "devtools"

MAIN_ACCOUNT = {
    "phone_number_id": "100000000000001",
    "waba_id": "200000000000001",
    "access_token": "sim-token",
    "app_secret": "sim-app-secret",
    "display_phone_number": "+34 600 000 000",
    "verified_name": "Strato Inmobiliaria",
    "app_id": "300000000000001",
}
OTHER_ACCOUNT = {
    "phone_number_id": "100000000000002",
    "waba_id": "200000000000002",
    "access_token": "sim-token-other",
    "app_secret": "sim-app-secret-other",
    "display_phone_number": "+34 600 000 002",
    "verified_name": "Otra Inmobiliaria",
    "app_id": "300000000000002",
}


def _simulator_class():
    if str(DEVTOOLS) not in sys.path:
        sys.path.insert(0, str(DEVTOOLS))
    from graph_simulator import GraphSimulator  # noqa: PLC0415 (devtools is not a package dep)
    return GraphSimulator


def _graph_simulator(case):
    """One simulator per test class, with MAIN_ACCOUNT and OTHER_ACCOUNT, stopped after the class."""
    cls = type(case)
    if getattr(cls, "_graph_simulator", None) is None:
        simulator = _simulator_class()(host="127.0.0.1", port=0, accounts=[MAIN_ACCOUNT, OTHER_ACCOUNT])
        simulator.start()
        cls._graph_simulator = simulator
        cls.addClassCleanup(simulator.stop)
        cls.addClassCleanup(setattr, cls, "_graph_simulator", None)
    return cls._graph_simulator


def sim(case):
    """The simulator, reset (no recorded requests, no faults) once per test."""
    if getattr(case, "_sim_reset_for", None) != case._testMethodName + str(id(case)):
        sim_control(_graph_simulator(case), "POST", "/_sim/reset")
        case._sim_reset_for = case._testMethodName + str(id(case))
    return _graph_simulator(case)


def sim_client(case):
    """A GraphApiClient for MAIN_ACCOUNT pointed at the simulator."""
    return GraphApiClient(
        MAIN_ACCOUNT["phone_number_id"], MAIN_ACCOUNT["access_token"], api_url=sim(case).url,
        waba_id=MAIN_ACCOUNT["waba_id"], app_id=MAIN_ACCOUNT["app_id"], timeout=(2, 5),
    )


def sim_control(sim, method, path, payload=None):
    """Call a /_sim/ control route; returns its parsed JSON (or None)."""
    response = requests.request(method, sim.url + path, json=payload, timeout=5)
    response.raise_for_status()
    return response.json() if response.content else None


def sim_faults(sim, *rules, seed=1):
    sim_control(sim, "POST", "/_sim/faults", {"rules": list(rules), "seed": seed})


def sim_requests(sim, path_contains=""):
    query = f"?path_contains={path_contains}" if path_contains else ""
    return sim_control(sim, "GET", "/_sim/requests" + query)["requests"]


def sim_last_json(sim, path_contains="/messages"):
    """The JSON body of the last request whose path contains ``path_contains``."""
    return sim_requests(sim, path_contains)[-1]["json"]


# ---------------------------------------------------------------------------
# A raw HTTP server for answers the simulator never gives (HTML pages, broken JSON)
# ---------------------------------------------------------------------------
class _CannedHandler(BaseHTTPRequestHandler):
    def _answer(self):
        status, headers, body = self.server.canned
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


def raw_server(case):
    """A loopback server answering ``server.canned = (status, headers, body_bytes)``, for this test."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CannedHandler)
    server.canned = (200, {"Content-Type": "application/json"}, json.dumps({}).encode())
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    case.addCleanup(server.server_close)
    case.addCleanup(server.shutdown)
    return server


# The arguments test functions of test_graph_api.py name (see unit_cases.gather).
FIXTURES = {"sim": sim, "sim_client": sim_client, "raw_server": raw_server}
