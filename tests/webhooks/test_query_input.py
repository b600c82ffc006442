"""Numbers and times in URLs that Python or the database would choke on are a 400 or a 404, never a 500.

Ids are 32-bit integers on PostgreSQL; ``str.isdigit`` accepts "²"; a time near year 1 with an offset
overflows when converted to UTC.
"""

from __future__ import annotations

import pytest

from builder.errors import InputError
from builder.triggers.services import build_timeout_from_text

HUGE = "99999999999999999999999"


@pytest.mark.parametrize("url, status", [
    ("/api/builds?trigger=²", 400),
    (f"/api/builds?trigger={HUGE}", 400),
    ("/api/builds?since=0001-01-01T00:30:00%2B01:00", 400),
    ("/api/builds?until=9999-12-31T23:59:59-05:00", 400),
    (f"/api/builds?before={HUGE}", 400),
    (f"/api/builds?limit={HUGE}", 400),
    ("/api/builds?before=²", 400),
    (f"/api/builds/{HUGE}", 404),
    (f"/api/builds/{HUGE}/log", 404),
    (f"/api/triggers/{HUGE}", 404),
    (f"/api/triggers/{HUGE}/deliveries", 404),
    ("/api/builds/2147483647", 404),
    ("/api/deployments?limit=²", 400),
    (f"/api/deployments?build={HUGE}", 200),  # not an id: the filter does not apply
    (f"/api/deliveries?build={HUGE}", 200),
    (f"/?before={HUGE}", 400),
    ("/?trigger=²", 400),
    (f"/deliveries?before={HUGE}", 400),
])
def test_out_of_range_and_odd_numbers_are_client_errors(client, url, status):
    answer = client.get(url)
    assert answer.status_code == status, answer.get_data(as_text=True)[:300]


@pytest.mark.parametrize("text", ["--5", "²", "1e3", "5.5", "9" * 30])
def test_a_malformed_build_timeout_in_the_form_is_an_input_error(text):
    with pytest.raises(InputError):
        build_timeout_from_text(text)
