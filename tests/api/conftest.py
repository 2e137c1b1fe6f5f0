"""Fixtures for the API tests: browsers of people in one organization and in another."""

from api_helpers import admin, app, browser, member, outsider

__all__ = ["admin", "app", "browser", "member", "outsider"]
