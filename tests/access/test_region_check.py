"""Which region a supervision or subsidy request is about: one rule for both (``scope.check_region``)."""

from __future__ import annotations

import pytest

from eldercare.platform.api.errors import Problem
from eldercare.platform.auth.scope import Principal, Role, check_region

REASON = "an administrative division code of 2, 4, 6 or 9 digits"


def _user(role: Role, region: str | None = None) -> Principal:
    return Principal(user_id=1, username="u", role=role, institution_id=None, region_code=region)


def test_the_callers_own_region_by_default() -> None:
    assert check_region(_user(Role.REGULATOR, "4205"), None) == "4205"
    assert check_region(_user(Role.ADMIN), None) == ""  # an admin's is everything


@pytest.mark.parametrize("region", ["42", "4205", "420502", "420502001"])
def test_a_region_within_a_regulators_own_or_any_for_an_admin(region: str) -> None:
    assert check_region(_user(Role.REGULATOR, "42"), region) == region
    assert check_region(_user(Role.ADMIN), region) == region


OTHER_DIGITS = ["\u0664\u0662", "\u00b2\u00b2", "\uff14\uff12\uff10\uff15"]  # Arabic-Indic, superscript, full-width


@pytest.mark.parametrize("region", ["4", "420", "42050", "4205020011", "42x5", "", " 4205", *OTHER_DIGITS])
def test_a_code_that_is_not_a_divisions_is_a_422_on_the_field_asked(region: str) -> None:
    for field in ("query.region", "body.region_code"):
        with pytest.raises(Problem) as caught:
            check_region(_user(Role.ADMIN), region, field=field)
        assert caught.value.status == 422
        assert [(e.field, e.reason) for e in caught.value.errors] == [(field, REASON)]
    with pytest.raises(Problem) as default:
        check_region(_user(Role.REGULATOR, "4205"), region)
    assert [e.field for e in default.value.errors] == ["query.region"]


def test_a_region_outside_a_regulators_is_not_found() -> None:
    for region in ("42", "4201", "420602"):
        with pytest.raises(Problem) as caught:
            check_region(_user(Role.REGULATOR, "4205"), region)
        assert caught.value.status == 404
