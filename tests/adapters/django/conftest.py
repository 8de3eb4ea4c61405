"""Configure Django once for this process (see ``tests/adapters/transports_django.py``)."""

from __future__ import annotations

import pytest

pytest.importorskip("django")

from tests.adapters.transports_django import configure

configure()
