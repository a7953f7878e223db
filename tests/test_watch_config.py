"""The settings of scheduled checks and notifications: read from MAILKEEP_* variables, refused with a clear
error when they cannot be used."""

import ipaddress

import pytest

from app import create_app
from config import ConfigurationError


@pytest.mark.parametrize(("name", "value", "message"), [
    ("CHECK_INTERVAL", 3, "MAILKEEP_CHECK_INTERVAL must be a whole number of seconds, at least 5"),
    ("CHECK_INTERVAL", "soon", "MAILKEEP_CHECK_INTERVAL"),
    ("CHECK_CONCURRENCY", 0, "MAILKEEP_CHECK_CONCURRENCY must be a positive whole number"),
    ("CHECK_FAILURES_BEFORE_ALERT", -1, "MAILKEEP_CHECK_FAILURES_BEFORE_ALERT"),
    ("EXPIRY_WARNING_DAYS", "21,soon", "MAILKEEP_EXPIRY_WARNING_DAYS"),
    ("EXPIRY_WARNING_DAYS", "0", "MAILKEEP_EXPIRY_WARNING_DAYS"),
    ("CHECK_REMINDER_HOURS", -2, "MAILKEEP_CHECK_REMINDER_HOURS"),
    ("METRICS_NETWORKS", "10.0.0.0/33", "MAILKEEP_METRICS_NETWORKS"),
])
def test_a_setting_that_cannot_be_used_stops_start_up_saying_which(app_config, name, value, message):
    with pytest.raises(ConfigurationError, match=message):
        create_app({**app_config, name: value})


def test_the_settings_are_read_and_converted(app_config, monkeypatch):
    monkeypatch.setenv("MAILKEEP_CHECK_INTERVAL", "0")
    monkeypatch.setenv("MAILKEEP_EXPIRY_WARNING_DAYS", "7,30")
    monkeypatch.setenv("MAILKEEP_METRICS_NETWORKS", "10.1.0.0/16, 127.0.0.1/32")
    app = create_app(app_config)
    assert app.config["CHECK_INTERVAL"] == 0 and app.config["EXPIRY_WARNING_DAYS"] == (30, 7)
    assert app.config["METRICS_NETWORKS"] == (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("127.0.0.1/32"))
    assert (app.config["CHECK_CONCURRENCY"], app.config["CHECK_FAILURES_BEFORE_ALERT"]) == (4, 3)
