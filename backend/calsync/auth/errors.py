"""The one exception sign-in raises; its message is shown to the user as it is."""

from __future__ import annotations


class SignInError(Exception):
    """Sign-in was refused; ``str(error)`` says why and what to do, in words for the user."""


class SignInUnavailable(SignInError):
    """Sign-in cannot be checked right now (Microsoft's keys unreachable): not the user's fault."""
