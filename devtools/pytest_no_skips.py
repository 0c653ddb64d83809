"""pytest plugin: a run that skipped a test did not pass (pytest-odoo silently skips what it cannot run)."""


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == 0:
        reporter.write_line(f"FAILED: {len(skipped)} test(s) skipped; every test must run.", red=True)
        session.exitstatus = 1
