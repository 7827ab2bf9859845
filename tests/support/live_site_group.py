"""One xdist group for the e2e tests, a pytest plugin (tests/conftest.py loads it).

`make test` spreads tests over two pytest-xdist workers (`--dist loadgroup`). The e2e tests
share one live site (Prefect server, git repos, work pool): keeping them on one worker builds
the site once. Grouping needs pytest < 9.2: under 9.2 xdist ignores the group without a word
(pytest-xdist#1386), and tests/test_suite.py fails.
"""

from __future__ import annotations

import pytest

LIVE_SITE_GROUP = "live-site"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.xdist_group(LIVE_SITE_GROUP))
