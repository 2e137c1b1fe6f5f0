"""The security regression suite stays whole: deleting or emptying one of its modules fails CI.

Each module must exist and define at least as many tests as it did when this guard was
written (raise a minimum when tests are added; lowering one is a reviewed decision). The
count is read from the source (ast), so the guard costs nothing and cannot be dodged by a
module that fails to import (pytest would report that failure itself).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

# module -> (what it guards, minimum number of test functions)
SUITE = {
    "security/test_isolation.py": ("one organization or user never sees another's data", 9),
    "security/test_csrf.py": ("CSRF on every state-changing route", 6),
    "security/test_url_guard.py": ("SSRF: user-supplied URLs are validated", 13),
    "security/test_outbound_connections.py": ("SSRF: the address actually connected to", 7),
    "security/test_token_validation.py": ("Office SSO token validation", 20),
    "security/test_secrets.py": ("secrets encrypted at rest, never logged or returned", 2),
    "security/test_sessions.py": ("session cookies and sign-out", 8),
    "security/test_rate_limits.py": ("rate limits on sign-in and connect", 5),
    "security/test_headers.py": ("CSP and security headers", 6),
    "security/test_errors.py": ("errors are JSON, oversized bodies a 413", 6),
    "security/test_security_settings.py": ("production refuses unsafe settings", 6),
    "api/test_api_contract.py": ("schemathesis fuzzing of every API route", 1),
}

# Tests that must keep their name because a document or an issue points at them.
NAMED = {
    "security/test_errors.py": ["test_an_oversized_request_is_a_json_413"],
    "api/test_api_contract.py": ["test_the_api_keeps_its_contract"],
}


def _defined_tests(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            names.append(node.name)
    return names


@pytest.mark.parametrize("module", list(SUITE), ids=list(SUITE))
def test_each_security_regression_module_exists_with_its_tests(module: str) -> None:
    what, minimum = SUITE[module]
    path = TESTS / module
    assert path.is_file(), f"{module} ({what}) is gone: the security suite must keep it"
    found = _defined_tests(path)
    assert len(found) >= minimum, (
        f"{module} ({what}) defines {len(found)} tests, fewer than the {minimum} it had"
    )
    for name in NAMED.get(module, []):
        assert name in found, f"{module} lost {name}"
