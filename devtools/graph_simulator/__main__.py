"""python devtools/graph_simulator --port 8899 [--config accounts.json] [--webhook-url URL] [--auto-status]"""
import argparse
import json
import os
import sys

if __package__ in (None, ""):
    # Run as a directory (python devtools/graph_simulator): make the package importable by name.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from graph_simulator.simulator import GraphSimulator
else:
    from .simulator import GraphSimulator


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="graph_simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--config", help='JSON: a list of accounts, or {"accounts": [...], "templates": [...]}')
    parser.add_argument("--webhook-url", help="where status webhooks go with --auto-status")
    parser.add_argument("--auto-status", action="store_true",
                        help="follow every accepted send with signed sent + delivered webhooks")
    parser.add_argument("--status-delay", type=float, default=0.2, help="seconds before the first status")
    return parser.parse_args(argv)


def load_config(path):
    if not path:
        return {}
    with open(path, encoding="utf-8") as config_file:
        config = json.load(config_file)
    return {"accounts": config} if isinstance(config, list) else config


def main(argv=None):
    arguments = parse_arguments(argv)
    config = load_config(arguments.config)
    simulator = GraphSimulator(
        host=arguments.host, port=arguments.port, accounts=config.get("accounts"),
        webhook_url=arguments.webhook_url or config.get("webhook_url"),
        auto_status=arguments.auto_status or bool(config.get("auto_status")),
        status_delay=arguments.status_delay, templates=config.get("templates"))
    simulator.run(on_ready=lambda: print(f"listening on {simulator.url}", flush=True))


if __name__ == "__main__":
    main()
