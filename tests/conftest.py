"""Shared fixtures. pytest puts tests/ on sys.path, so helpers import as `support.*`."""

from support.booted import booted_system  # noqa: F401 (fixture)
from support.live_site_group import pytest_collection_modifyitems  # noqa: F401 (hook)
from support.services import postgres_server, prefect_server, s3_server  # noqa: F401 (fixtures)
