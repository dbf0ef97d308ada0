"""The gateway keeps a caller's X-Request-Id only when it is a sane short token."""
import re

import pytest

from services.gateway.request_log import request_id_from


@pytest.mark.parametrize("header", ["abc", "9f2c-41.aa:b_c", "A" * 64])
def test_a_sane_token_is_kept(header):
    assert request_id_from(header) == header


@pytest.mark.parametrize("header", [None, "", "A" * 65, "a b", "bad\nline", "-leading", "é", "x;y"])
def test_anything_else_gets_a_fresh_id(header):
    assert re.fullmatch(r"[0-9a-f]{32}", request_id_from(header))
