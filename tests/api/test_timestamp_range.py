"""Timestamps that parse but fall outside what UTC can hold (year 1 at +14:00, year 9999
at -14:00) are 400 naming the parameter, never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.livechat_app import livechat_app

from lcx.model import parse_iso

TOO_EARLY = "0001-01-01T00:00:00.000+14:00"
TOO_LATE = "9999-12-31T23:59:59.999-14:00"


@pytest.mark.parametrize("text", [TOO_EARLY, TOO_LATE])
def test_parse_iso_refuses_instants_outside_utc_years(text: str) -> None:
    """parse_iso says ValueError, as for any other bad timestamp."""
    with pytest.raises(ValueError, match="out of range"):
        parse_iso(text)


async def test_out_of_range_query_timestamps_are_invalid(tmp_path: Path) -> None:
    """``from``/``to`` on listings and transcripts and ``before`` on data-retention."""
    async with livechat_app(tmp_path) as app:
        supervisor = app.tokens.supervisor()
        cases = [("GET", "/organizations/o1/livechat-requests", "from", TOO_EARLY),
                 ("GET", "/organizations/o1/livechat-requests", "to", TOO_LATE),
                 ("GET", "/organizations/o1/livechat-messages", "from", TOO_EARLY),
                 ("GET", "/organizations/o1/livechat-messages", "to", TOO_LATE),
                 ("GET", "/agent/organizations/o1/livechat-conversations", "from", TOO_EARLY),
                 ("DELETE", "/organizations/o1/data-retention", "before", TOO_EARLY),
                 ("DELETE", "/organizations/o1/data-retention", "before", TOO_LATE)]
        for method, path, name, value in cases:
            response = await app.client.request(method, path, params={name: value},
                                                headers=supervisor)
            assert response.status_code == 400, (path, name, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_request"
            assert error["details"]["fields"] == [name], error
        fine = await app.client.get("/organizations/o1/livechat-requests", headers=supervisor,
                                    params={"from": "0001-01-01T14:00:00.000+14:00",
                                            "to": "9999-12-31T23:59:59.999Z"})
        assert fine.status_code == 200, fine.text
