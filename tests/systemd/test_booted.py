"""The booted-system harness itself: it boots, shares the network, keeps nothing on the
machine, survives a reboot, and tears down completely even when the test body fails."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
from support.booted import booted, mounted

# The timeout includes waiting for $PRH_NSPAWN_LOCK while another run has a system booted.
pytestmark = [pytest.mark.systemd, pytest.mark.timeout(1800)]


def serve_once(port_holder: list[int]) -> http.server.HTTPServer:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    port_holder.append(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_boots_shares_loopback_keeps_nothing_and_tears_down_on_failure(tmp_path: Path) -> None:
    """Runs before the session's shared system boots (one container at a time)."""
    host_machine_id = Path("/etc/machine-id").read_text()
    marker = tmp_path / "host-file"
    marker.write_text("from the host\n")
    ports: list[int] = []
    server = serve_once(ports)
    with pytest.raises(RuntimeError, match="test body failed"), booted(tmp_path / "sys") as system:
        assert system.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
        assert system.run(["cat", "/etc/machine-id"]).stdout != host_machine_id
        # Host files are visible once copied in; writes inside stay inside.
        # (/tmp and /run inside are the container's own tmpfs: copy elsewhere.)
        inside = system.copy_in(marker, "/srv/prh-booted-probe/host-file")
        assert system.run(["cat", str(inside)], check=True).stdout == "from the host\n"
        system.run(["sh", "-c", "echo inside > /etc/prh-booted-probe"], check=True)
        assert not Path("/etc/prh-booted-probe").exists()
        # The network is shared: the host's loopback server answers inside.
        fetched = system.run(
            [
                "python3",
                "-c",
                f"import urllib.request as u; u.urlopen('http://127.0.0.1:{ports[0]}/')",
            ]
        )
        assert fetched.returncode == 0, fetched.stderr
        # Commands as another user, systemctl and the journal.
        system.run(["useradd", "--create-home", "prh-probe"], check=True)
        assert system.run(["id", "-un"], user="prh-probe").stdout.strip() == "prh-probe"
        system.write_file(
            "/etc/systemd/system/prh-probe.service",
            "[Service]\nType=oneshot\nExecStart=/bin/echo probe says hi\n",
        )
        system.systemctl("daemon-reload", check=True)
        system.systemctl("start", "prh-probe.service", check=True)
        assert "probe says hi" in system.journal("prh-probe.service")
        # A reboot keeps the tree (the user) and comes back up.
        system.reboot()
        assert system.run(["id", "prh-probe"]).returncode == 0
        merged, tmpfs = system.merged, system.tmpfs
        raise RuntimeError("test body failed")
    server.shutdown()
    # Nothing of this system stays mounted (another test run may have booted its own since).
    assert str(tmp_path / "sys") not in Path("/proc/mounts").read_text()
    assert not mounted(merged) and not mounted(tmpfs)
