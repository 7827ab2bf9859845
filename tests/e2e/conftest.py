"""Fixtures of the end-to-end tests (the live server and S3 come from tests/conftest.py)."""

import pytest
from support.site import site  # noqa: F401 (fixture)

# `make test` spreads tests over two pytest-xdist workers (--dist loadgroup): every test that
# uses the e2e site goes to the same worker, so the site (session-scoped) is built once.
SITE_GROUP = pytest.mark.xdist_group("e2e-site")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "site" in getattr(item, "fixturenames", ()):
            item.add_marker(SITE_GROUP)
