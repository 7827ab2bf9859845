"""The booted-system harness's check before it boots (tests/support/booted.py): a checkout the
booted system cannot see is refused in one line. Booting itself is tests/systemd's."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.booted import BootError, check_visible_inside


@pytest.mark.parametrize("root", ["/tmp/ci/repo", "/run/user/0/repo"], ids=["tmp", "run"])  # noqa: S108
def test_a_checkout_the_booted_system_cannot_see_is_refused(root: str) -> None:
    with pytest.raises(BootError, match=rf"^the checkout {root} is under /(tmp|run), "):
        check_visible_inside(Path(root))


def test_a_checkout_elsewhere_is_let_through() -> None:
    check_visible_inside(Path("/work/ci/repo"))
    check_visible_inside(Path("/tmpdata/repo"))  # noqa: S108 (only /tmp itself is hidden)
