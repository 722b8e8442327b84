"""Shared pytest setup: quiet TF logging, fixture paths."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
