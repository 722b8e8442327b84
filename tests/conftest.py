"""Shared pytest setup: quiet TF logging, fixture paths, absl's logging state restored after each test."""

import logging
import os
import pathlib

import pytest
from absl import logging as absl_logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _absl_logging_left_as_found():
    """Every test leaves absl's verbosity and its logger's level as it found them, so that the
    suite's order does not matter (``tf.saved_model.save`` sets the verbosity to FATAL and back,
    which leaves the absl logger at WARNING and hides the INFO lines a later test looks for)."""
    logger = logging.getLogger("absl")
    level, verbosity = logger.level, absl_logging.get_verbosity()
    yield
    absl_logging.set_verbosity(verbosity)
    logger.setLevel(level)
