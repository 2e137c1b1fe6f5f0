"""The Outlook add-in manifest (XML, MailApp) for one deployment of calsync.

Office loads an add-in from a manifest that names every URL absolutely, so each
deployment needs its own manifest: `render_manifest(base_url)` fills the package
template `manifest_template.xml` with the deployment's HTTPS base URL. The
repository's `manifest.xml` is `render_manifest(DEV_BASE_URL)` (the local
development server), committed like Office's own project templates.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from string import Template
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

# The add-in's identity in Office: fixed for the life of the product. Changing it
# makes Office treat the add-in as a different one (users would install it again).
APP_ID = "fdbb52a9-bb26-40e6-9d08-5ea18f5b04a9"
# Office requires four numbers; raise it when the manifest changes in a released build.
MANIFEST_VERSION = "1.0.0.0"
# Placeholder single sign-on client id until the deployment registers its Entra app.
PLACEHOLDER_CLIENT_ID = "00000000-0000-0000-0000-000000000000"
# The base URL of the committed `manifest.xml` (local development server).
DEV_BASE_URL = "https://localhost:3000"

TEMPLATE_PATH = Path(__file__).with_name("manifest_template.xml")


def normalize_base_url(base_url: str) -> str:
    """Return base_url without a trailing slash; refuse anything but an https origin/path."""
    if not isinstance(base_url, str) or not base_url.strip():
        raise ValueError("The base URL is empty: give the HTTPS address the add-in is served from.")
    url = base_url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise ValueError(
            f"The base URL {url!r} is not an HTTPS address: Outlook loads add-ins "
            "only over HTTPS, so give a URL that starts with https://."
        )
    if not parts.hostname:
        raise ValueError(
            f"The base URL {url!r} has no host name, e.g. https://calsync.example.com."
        )
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(
            f"The base URL {url!r} has a query or a fragment; give only the address, "
            "e.g. https://calsync.example.com."
        )
    if parts.username or parts.password:
        raise ValueError(f"The base URL {url!r} must not contain a user name or password.")
    if any(ch.isspace() for ch in url):
        raise ValueError(f"The base URL {url!r} contains spaces.")
    return url.rstrip("/")


def _guid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise ValueError(
            f"The {what} {value!r} is not a GUID (like {PLACEHOLDER_CLIENT_ID})."
        ) from None


def render_manifest(
    base_url: str, *, app_id: str | None = None, client_id: str | None = None
) -> str:
    """Return the XML add-in manifest for the deployment served at base_url (https).

    app_id overrides the add-in's fixed GUID (e.g. a separate staging add-in);
    client_id is the single sign-on application (client) id registered for the
    deployment, the all-zero placeholder when not given.
    """
    base = normalize_base_url(base_url)
    app = _guid(app_id, "add-in id") if app_id is not None else APP_ID
    client = _guid(client_id, "client id") if client_id is not None else PLACEHOLDER_CLIENT_ID
    host = urlsplit(base).netloc.lower()
    values = {
        "base_url": base,
        "host": host,
        "app_id": app,
        "client_id": client,
        "version": MANIFEST_VERSION,
    }
    quoted = {key: escape(value, {'"': "&quot;"}) for key, value in values.items()}
    return Template(TEMPLATE_PATH.read_text(encoding="utf-8")).substitute(quoted)


def write_manifest(
    base_url: str,
    path: str | Path,
    *,
    app_id: str | None = None,
    client_id: str | None = None,
) -> Path:
    """Write render_manifest(base_url, ...) to path (UTF-8, LF line ends); return the path."""
    text = render_manifest(base_url, app_id=app_id, client_id=client_id)
    target = Path(path)
    with target.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    return target


def main_manifest(base_url: str, output: str | None) -> int:
    """`calsync manifest --base-url URL [--output FILE]`: print or write the manifest.

    Returns the process exit status: 0 on success, 2 when the base URL is refused,
    1 when the file cannot be written. Messages go to stderr.
    """
    try:
        if output is None or output == "-":
            sys.stdout.write(render_manifest(base_url))
            return 0
        path = write_manifest(base_url, output)
    except ValueError as exc:
        print(f"calsync manifest: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"calsync manifest: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(
        f"Wrote the Outlook add-in manifest for {normalize_base_url(base_url)} to {path}.",
        file=sys.stderr,
    )
    return 0
