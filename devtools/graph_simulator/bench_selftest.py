"""How many sends per second the simulator takes from `requests` keep-alive clients.

    python devtools/graph_simulator/bench_selftest.py [--sends 10000] [--clients 2] [--in-process]

By default the simulator runs as its own process (as in the benchmarks), so client and server
do not share a GIL. Needs `requests` (the simulator itself does not).
"""
import argparse
import multiprocessing
import os
import subprocess
import sys
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(HERE))
    from graph_simulator.control import ControlClient
    from graph_simulator.simulator import GraphSimulator
    from graph_simulator.state import DEFAULT_ACCOUNT
else:
    from .control import ControlClient
    from .simulator import GraphSimulator
    from .state import DEFAULT_ACCOUNT


def drive_sends(base_url, sends, clients=1, version="v25.0"):
    """Push `sends` text messages from `clients` processes (one Session each); returns sends/s.

    Processes, not threads: a `requests` client costs more CPU per call than the simulator, so
    threads sharing one GIL would measure the client instead of the server.
    """
    url = f"{base_url}/{version}/{DEFAULT_ACCOUNT['phone_number_id']}/messages"
    context = multiprocessing.get_context("spawn")
    start_line = context.Barrier(clients + 1)
    results = context.Queue()
    workers = [context.Process(target=_client_loop, args=(url, range(i, sends, clients), start_line, results))
               for i in range(clients)]
    for worker in workers:
        worker.start()
    start_line.wait(timeout=60)
    started = time.perf_counter()
    failures = [failure for _worker in workers for failure in results.get(timeout=600)]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    if failures:
        raise RuntimeError(f"{len(failures)} sends failed, first: {failures[0]}")
    return sends / elapsed


def _client_loop(url, numbers, start_line, results):
    failures = []
    try:
        session = _bench_session()
        session.get(url.rsplit("/", 1)[0], timeout=10)  # open the keep-alive connection first
        start_line.wait(timeout=60)
        for number in numbers:
            response = session.post(url, json=_text_send(number), timeout=10)
            if response.status_code != 200:
                failures.append(response.text)
        session.close()
    except Exception as err:  # reported to the parent, which would otherwise wait forever
        failures.append(repr(err))
    results.put(failures)


def _bench_session():
    session = requests.Session()
    session.trust_env = False  # no proxy for loopback
    session.headers["Authorization"] = f"Bearer {DEFAULT_ACCOUNT['access_token']}"
    return session


def _text_send(number):
    return {"messaging_product": "whatsapp", "recipient_type": "individual",
            "to": f"34600{number % 1_000_000:06d}", "type": "text",
            "text": {"body": f"Mensaje {number}"}, "biz_opaque_callback_data": f"bench-{number}"}


def check_exactly_once(sent, sends):
    counts = sent["by_callback"]
    if len(counts) != sends or any(count != 1 for count in counts.values()):
        raise RuntimeError(f"expected {sends} distinct sends, got {len(counts)}")


def bench_subprocess(sends, clients):
    command = [sys.executable, HERE, "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        base_url = process.stdout.readline().split("listening on ", 1)[1].strip()
        control = ControlClient(base_url)
        drive_sends(base_url, min(sends, 500), clients)  # warm-up: connections, caches
        control.reset()
        cpu_before = _cpu_seconds(process.pid)
        rate = drive_sends(base_url, sends, clients)
        cpu_per_send = (_cpu_seconds(process.pid) - cpu_before) / sends
        check_exactly_once(control.sent(), sends)
        print(f"simulator CPU: {cpu_per_send * 1e6:.0f} µs per send")
        return rate
    finally:
        process.terminate()
        process.wait(10)


def _cpu_seconds(pid):
    """User + system CPU time of a process (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat_file:
            fields = stat_file.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_in_process(sends, clients):
    with GraphSimulator() as simulator:
        drive_sends(simulator.url, min(sends, 500), clients)
        simulator.reset()
        rate = drive_sends(simulator.url, sends, clients)
        check_exactly_once(simulator.sent(), sends)
        return rate


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=2, help="client processes, one Session each")
    parser.add_argument("--in-process", action="store_true", help="simulator thread in this process")
    arguments = parser.parse_args(argv)
    bench = bench_in_process if arguments.in_process else bench_subprocess
    rate = bench(arguments.sends, arguments.clients)
    mode = "in-process" if arguments.in_process else "separate process"
    print(f"{arguments.sends} sends, {arguments.clients} client(s), simulator in {mode}: {rate:,.0f} sends/s")
    return rate


if __name__ == "__main__":
    main()
