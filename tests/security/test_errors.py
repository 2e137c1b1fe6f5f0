"""Every error has one JSON shape and a sentence; nothing internal ever leaks out."""

from __future__ import annotations

from api_helpers import Browser, error_of
from sqlalchemy import text


def test_an_unknown_address_is_a_json_404(client) -> None:  # type: ignore[no-untyped-def]
    reply = client.get("/api/nothing-here")

    assert reply.status_code == 404
    assert error_of(reply)["message"] == "There is nothing at this address."


def test_a_wrong_method_is_a_json_405(client) -> None:  # type: ignore[no-untyped-def]
    reply = client.delete("/api/me")

    assert reply.status_code == 405
    assert "GET" in reply.headers["Allow"]
    error_of(reply)


def test_an_oversized_request_is_a_json_413(admin: Browser) -> None:
    reply = admin.patch("/api/organization", json={"name": "x" * (2 * 1024 * 1024)})

    assert reply.status_code == 413
    assert "too large" in error_of(reply)["message"]


def test_a_body_that_is_not_json_is_refused_with_a_sentence(admin: Browser) -> None:
    reply = admin.patch(
        "/api/organization", data="{not json", headers={"Content-Type": "application/json"}
    )

    assert reply.status_code in (400, 422)
    assert error_of(reply)["message"]


def test_a_wrong_type_names_the_field_by_its_label(admin: Browser) -> None:
    reply = admin.patch("/api/organization/settings", json={"window_days_ahead": "lots"})

    assert reply.status_code == 422
    error = error_of(reply)
    assert error["message"] == 'Please check your input. "Days ahead": Not a valid integer.'
    assert error["fields"] == {"window_days_ahead": "Not a valid integer."}


def test_an_internal_error_shows_no_stack_and_no_sql(app, caplog) -> None:  # type: ignore[no-untyped-def]
    @app.get("/api/explode")
    def explode():  # type: ignore[no-untyped-def]
        with app.extensions["calsync"].engine.connect() as connection:
            connection.execute(text("SELECT secret_column FROM no_such_table"))

    reply = app.test_client().get("/api/explode")

    assert reply.status_code == 500
    body = reply.get_data(as_text=True)
    assert error_of(reply)["message"] == "Something went wrong on our side. Try again in a minute."
    for leak in ("SELECT", "no_such_table", "Traceback", "sqlalchemy", ".py"):
        assert leak not in body
    assert "no_such_table" in caplog.text  # the operator still learns what happened
