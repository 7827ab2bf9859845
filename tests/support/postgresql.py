"""Where PostgreSQL's server programs are: found, not assumed. The newest installed major of
14 or later that has `initdb` and `pg_ctl`, from Debian's and Ubuntu's per-major folders
(/usr/lib/postgresql/<major>/bin) and from `pg_config --bindir` (other systems).

Tests (support.services) and benchmarks import server_bin(); .ci/run runs this file with the
machine's python3 before any venv exists: it prints the folder, or exits 1 when there is none
(then .ci/run installs PostgreSQL). Standard library only, for that reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

MIN_MAJOR = 14
PER_MAJOR = Path("/usr/lib/postgresql")  # <major>/bin, one per installed major
PROGRAMS = ("initdb", "pg_ctl")
NOT_FOUND = (
    f"no PostgreSQL {MIN_MAJOR} or later with {' and '.join(PROGRAMS)} is installed "
    f"(looked in {PER_MAJOR}/*/bin and at pg_config --bindir)"
)


def pg_config_bin(pg_config: str | None) -> tuple[int, Path] | None:
    """(major, bindir) of the PostgreSQL that *pg_config* describes."""
    if not pg_config:
        return None
    answer = subprocess.run(
        [pg_config, "--version", "--bindir"], capture_output=True, text=True, check=False
    )
    match = re.match(r"PostgreSQL (\d+)[^\n]*\n(.+)\n", answer.stdout)
    return (int(match[1]), Path(match[2])) if answer.returncode == 0 and match else None


def server_bin(
    per_major: Path = PER_MAJOR, pg_config: str | None = shutil.which("pg_config")
) -> Path | None:
    """The bin folder of the newest installed major >= MIN_MAJOR, or None."""
    found = [
        (int(folder.parent.name), folder)
        for folder in per_major.glob("*/bin")
        if folder.parent.name.isdigit()
    ]
    if described := pg_config_bin(pg_config):
        found.append(described)
    usable = [
        (major, folder)
        for major, folder in found
        if major >= MIN_MAJOR and all((folder / name).is_file() for name in PROGRAMS)
    ]
    return max(usable)[1] if usable else None


if __name__ == "__main__":
    folder = server_bin()
    print(folder or f"error: {NOT_FOUND}", file=sys.stdout if folder else sys.stderr)
    sys.exit(0 if folder else 1)
