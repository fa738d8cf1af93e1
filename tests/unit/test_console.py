"""``quiet()``: ZenML's and other libraries' console chatter muted, our own warnings kept."""

from __future__ import annotations

import logging

from sentibridge.console import quiet


def test_quiet_mutes_zenml_and_library_chatter_but_not_our_warnings(caplog):
    caplog.set_level(logging.INFO)
    with quiet():
        logging.getLogger("zenml.orchestrators").error("step failed (we re-raise it ourselves)")
        logging.getLogger("great_expectations.data_context").info("created a temporary docs site")
        logging.getLogger("mlflow.models").warning("chatter")
        logging.getLogger("mlflow.store").error("a library's error")
        logging.getLogger("sentibridge.data").info("ours, but only info")
        logging.getLogger("sentibridge.data").warning("ours: 3 rows dropped")
        logging.getLogger("steps.train").error("ours: an error")
        print("a ZenML banner")
    logging.getLogger("mlflow.models").warning("after the block")
    assert caplog.messages == ["a library's error", "ours: 3 rows dropped", "ours: an error", "after the block"]
    assert logging.root.manager.disable == logging.NOTSET
