"""Module-level test functions as one Odoo test class, so that Odoo's own runner (``odoo-bin --test-enable
--test-tags /strato_whatsapp``, as OCA's CI runs it) and pytest-odoo run the same tests.

The pure tests (no database: the Graph API client, webhook parsing, phone helpers) read best as plain
functions with ``pytest.mark.parametrize`` tables; ``gather`` turns each module's ``test_*`` functions into
methods of one ``BaseCase`` class: a parametrize table becomes subtests, and the arguments a function names
are given by ``fixtures`` ({name: callable(case) -> value}, cleaned up with ``case.addCleanup``). The
functions are removed from the module, so pytest collects them once, through the class.
"""
import inspect
import itertools

from odoo.tests import tagged
from odoo.tests.common import BaseCase


def _parameter_sets(function):
    """[(subtest label, {argument: value})] from the function's parametrize marks (one empty set if none)."""
    tables = []
    for mark in reversed(getattr(function, "pytestmark", [])):
        if mark.name != "parametrize":
            continue
        names, rows = mark.args[0], mark.args[1]
        names = [name.strip() for name in names.split(",")] if isinstance(names, str) else list(names)
        tables.append([dict(zip(names, row if len(names) > 1 else (row,))) for row in rows])
    sets = []
    for combination in itertools.product(*tables):
        arguments = {}
        for part in combination:
            arguments.update(part)
        sets.append(arguments)
    return sets or [{}]


def _method(function, fixtures):
    wanted = [name for name in inspect.signature(function).parameters]

    def test(self):
        for arguments in _parameter_sets(function):
            with self.subTest(**{name: repr(value)[:60] for name, value in arguments.items()}):
                given = {name: fixtures[name](self) for name in wanted if name not in arguments}
                function(**given, **arguments)

    test.__name__ = function.__name__
    test.__doc__ = function.__doc__
    return test


def gather(class_name, namespace, fixtures=None):
    """The ``test_*`` functions of ``namespace`` (a module's globals) as methods of a new tagged class."""
    fixtures = fixtures or {}
    functions = {name: value for name, value in namespace.items()
                 if name.startswith("test_") and inspect.isfunction(value)}
    attributes = {name: _method(function, fixtures) for name, function in functions.items()}
    attributes["__module__"] = namespace["__name__"]
    for name in functions:
        del namespace[name]
    return tagged("post_install", "-at_install")(type(class_name, (BaseCase,), attributes))
