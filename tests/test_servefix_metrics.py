"""Every Prometheus label value comes from a bounded set, whatever clients send: made-up HTTP methods (200
methods made 200 series), unmatched paths, statuses, modes, surfaces, outcomes and route causes."""

from __future__ import annotations

import re

from sotrag.app.serving.metrics import HTTP_METHODS, Metrics, bounded, status_label
from tests.scripted_app import scripted_client

SERIES = re.compile(r"^(sotrag_[a-z_]+?)(?:_total|_bucket|_count|_sum|_created)?\{(.*)\}", re.M)


def label_values(text: str, label: str) -> set[str]:
    values = set()
    for _, labels in SERIES.findall(text):
        for m in re.finditer(rf'(?:^|,){label}="([^"]*)"', labels):
            values.add(m.group(1))
    return values


async def test_client_chosen_methods_and_paths_make_no_new_series() -> None:
    async with scripted_client() as (c, _engine):
        for i in range(50):
            r = await c.request(f"X{i:04d}", "/v1/answer")
            assert r.status_code in (400, 405), r.status_code
            await c.get(f"/v1/no-such-route-{i}")
            await c.request(f"M{i}", f"/v1/documents/doc-{i}")
        assert (await c.post("/v1/answer", json={"question": "roses?", "mode": "normal"})).status_code == 200
        text = (await c.get("/metrics")).text
    assert label_values(text, "method") <= HTTP_METHODS | {"other"}
    assert "other" in label_values(text, "method")
    routes = label_values(text, "route")
    assert not any("no-such-route" in r or "doc-" in r for r in routes), routes
    assert all((v.isdigit() and 100 <= int(v) <= 599) or v == "other" for v in label_values(text, "status"))
    series = len(SERIES.findall(text))
    assert series < 200, series  # about a dozen routes by a few methods and statuses, not one per request


def test_every_answer_label_is_bounded() -> None:
    m = Metrics()
    m.count_answer("evil-surface", "made-up-mode", "x" * 100, "whatever")
    m.count_answer("rest", None, "sot", "ok")
    text = m.render()[0].decode()
    assert 'surface="other"' in text and 'surface="rest"' in text
    assert label_values(text, "requested_mode") == {"other", "none"}
    assert label_values(text, "mode") == {"other", "sot"}
    assert label_values(text, "outcome") == {"other", "ok"}
    assert bounded(None, HTTP_METHODS) == "other" and bounded("GET", HTTP_METHODS) == "GET"
    assert status_label(200) == "200" and status_label(1000) == "other" and status_label("x") == "other"
