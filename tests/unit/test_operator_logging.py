"""The operator never writes a secret-bearing request URL to its log."""

from __future__ import annotations

import logging

import httpx
import pytest

from superloop_ops import main

SECRET_URL = "https://hooks.slack.invalid/services/T000/B000/very-secret-token"


def _post_once() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="ok"))
    with httpx.Client(transport=transport) as client:
        client.post(SECRET_URL, json={"text": "hello"})


@pytest.fixture
def restore_levels() -> object:
    saved = {name: logging.getLogger(name).level for name in main.URL_LOGGERS}
    yield saved
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_httpx_logs_the_url_at_info_without_the_guard(
    caplog: pytest.LogCaptureFixture, restore_levels: object
) -> None:
    # Guards the test itself: if httpx stopped logging URLs, the next test would prove nothing.
    logging.getLogger("httpx").setLevel(logging.NOTSET)
    caplog.set_level(logging.INFO)
    _post_once()
    assert "very-secret-token" in caplog.text


def test_quiet_url_logging_keeps_request_urls_out_of_an_info_log(
    caplog: pytest.LogCaptureFixture, restore_levels: object
) -> None:
    main.quiet_url_logging()
    caplog.set_level(logging.INFO)
    _post_once()
    assert "very-secret-token" not in caplog.text
    assert all(logging.getLogger(name).level == logging.WARNING for name in main.URL_LOGGERS)


def test_the_watch_feed_handlers_success_lines_are_dropped_and_everything_else_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """kopf logs "Handler '<name>' succeeded." at INFO for every event handler run: one line per
    Loop event for the scheduler's feed. Those go; other handlers' lines and failures stay."""
    objects = logging.getLogger("kopf.objects")
    saved = list(objects.filters)
    try:
        main.quiet_watch_feed_logging()
        main.quiet_watch_feed_logging()  # idempotent: one filter
        assert len(objects.filters) == len(saved) + 1
        caplog.set_level(logging.INFO, logger="kopf.objects")
        objects.info("Handler 'on_loop_event' succeeded.")
        objects.info("Handler %r succeeded.", "label_loop_shard")
        objects.info("Handler 'on_loop_change' succeeded.")
        objects.error("Handler 'on_loop_event' failed with an exception and will try again in 60 seconds: x")
        messages = [record.getMessage() for record in caplog.records]
        assert messages == [
            "Handler 'on_loop_change' succeeded.",
            "Handler 'on_loop_event' failed with an exception and will try again in 60 seconds: x",
        ]
    finally:
        objects.filters[:] = saved
