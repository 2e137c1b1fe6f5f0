"""Response headers for a site that Outlook frames.

The task pane runs in an iframe of Outlook on the web (and of Office's hosts), so
``frame-ancestors`` must name Office's origins, and only those: any other site framing
us could click-jack a signed-in user. X-Frame-Options cannot express a list, so it is
not sent (browsers use frame-ancestors when both exist). Hosts follow Microsoft's list
for Office add-ins and Microsoft 365 apps in Outlook.
"""

from __future__ import annotations

from flask import Flask, Response, request

OFFICE_FRAME_ANCESTORS = (
    "https://outlook.office.com",
    "https://outlook.office365.com",
    "https://outlook.live.com",
    "https://outlook.cloud.microsoft",
    "https://*.cloud.microsoft",
    "https://*.office.com",
    "https://*.office365.com",
    "https://*.officeapps.live.com",
    "https://*.microsoft365.com",
    "https://*.microsoft.com",
)
OFFICE_JS = "https://appsforoffice.microsoft.com"
# MSAL's fallback (outside nested app authentication) talks to the login host from the page.
MICROSOFT_LOGIN = "https://login.microsoftonline.com"
# The interactive API docs load Swagger UI from this CDN; only /api/docs allows it.
DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_PATH = "/api/docs"

APP_POLICY = "; ".join(
    [
        "default-src 'self'",
        f"script-src 'self' {OFFICE_JS}",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        f"connect-src 'self' {MICROSOFT_LOGIN}",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        f"frame-ancestors 'self' {' '.join(OFFICE_FRAME_ANCESTORS)}",
    ]
)
DOCS_POLICY = "; ".join(
    [
        "default-src 'self'",
        f"script-src 'self' 'unsafe-inline' {DOCS_CDN}",
        f"style-src 'self' 'unsafe-inline' {DOCS_CDN}",
        f"img-src 'self' data: {DOCS_CDN}",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'self'",
    ]
)


def init_app(app: Flask, *, production: bool) -> None:
    @app.after_request
    def _security_headers(response: Response) -> Response:
        docs = request.path.startswith(DOCS_PATH)
        response.headers.setdefault("Content-Security-Policy", DOCS_POLICY if docs else APP_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # Same-origin requests keep their Referer (flask-wtf's https CSRF check needs it);
        # nothing, such as a sign-in link, leaks to another site.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.path.startswith("/api/"):
            # Personal data and CSRF tokens must not sit in a shared cache.
            response.headers.setdefault("Cache-Control", "no-store")
        if production:
            response.headers.setdefault(
                "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
            )
        return response
