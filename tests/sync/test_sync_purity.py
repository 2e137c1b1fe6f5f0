"""The engine stays vendor-neutral and free of the web/queue/database stack."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import calsync.sync

SYNC_DIR = Path(calsync.sync.__file__).parent
FORBIDDEN_IMPORTS = ("flask", "rq", "redis", "sqlalchemy", "requests", "msal", "authlib")
FORBIDDEN_IMPORT_PREFIXES = ("calsync.calendars", "calsync.crm", "calsync.models", "calsync.app")
VENDOR_NAMES = re.compile(
    r"google|graph|outlook|office ?365|exchange|suitecrm|dynamics|salesforce|hubspot|caldav|"
    r"zoho|sugarcrm|vtiger|pipedrive",
    re.IGNORECASE,
)


def sources() -> list[Path]:
    files = sorted(SYNC_DIR.rglob("*.py"))
    assert files
    return files


def test_engine_imports_no_framework_or_vendor_module() -> None:
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root not in FORBIDDEN_IMPORTS, f"{path.name} imports {name}"
                assert not name.startswith(FORBIDDEN_IMPORT_PREFIXES), f"{path.name}: {name}"


def test_engine_names_no_vendor() -> None:
    for path in sources():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not VENDOR_NAMES.search(line), f"{path.name}:{number}: {line.strip()}"
