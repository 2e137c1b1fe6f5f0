from __future__ import annotations

import pytest

from calsync.sync import Capabilities, DirectionNotSupported, SyncSettings, check_direction


def test_defaults() -> None:
    s = SyncSettings()
    assert (s.window_days_back, s.window_days_ahead) == (30, 365)
    assert (s.private_events, s.conflict_policy) == ("busy", "most_recent")
    assert SyncSettings.from_dict({}) == s
    assert SyncSettings.from_dict(s.to_dict()) == s


def test_from_dict_takes_the_stored_machine_values() -> None:
    s = SyncSettings.from_dict(
        {
            "record_option": "all",
            "direction": "two_way",
            "sync_invitees": False,
            "invitations": "after_first_sync",
            "window_days_back": 7,
            "window_days_ahead": 90,
            "private_events": "skip",
            "conflict_policy": "crm_wins",
        }
    )
    assert s.direction == "two_way" and s.invitations == "after_first_sync"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"direction": "both"}, '"Sync direction" must be one of'),
        ({"record_option": "some"}, '"Sync record option" must be one of'),
        ({"invitations": "sometimes"}, '"Email invitations / updates" must be one of'),
        ({"private_events": "hide"}, "Private events"),
        ({"conflict_policy": "newest"}, "Conflict policy"),
        ({"sync_invitees": "yes"}, "true or false"),
        ({"window_days_back": "30"}, "whole number of days"),
        ({"window_days_ahead": -1}, "between 0 and"),
        ({"colour": "blue"}, "Unknown sync setting 'colour'"),
    ],
)
def test_from_dict_refuses_bad_values_with_a_sentence(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        SyncSettings.from_dict(data)
    assert str(err.value).endswith(".")


def test_two_way_only_where_the_calendar_supports_it() -> None:
    check_direction(SyncSettings(direction="two_way"), Capabilities(two_way=True))
    check_direction(SyncSettings(direction="calendar_to_crm"), Capabilities(two_way=False))
    with pytest.raises(DirectionNotSupported, match=r"One way \(calendar to CRM\)"):
        check_direction(SyncSettings(direction="two_way"), Capabilities(two_way=False))


def test_allows_follows_direction() -> None:
    assert SyncSettings(direction="calendar_to_crm").allows("calendar")
    assert not SyncSettings(direction="calendar_to_crm").allows("crm")
    assert SyncSettings(direction="crm_to_calendar").allows("crm")
    assert SyncSettings(direction="two_way").allows("crm")
