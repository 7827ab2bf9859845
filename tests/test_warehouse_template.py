"""The warehouse template: bakes with 0, 1 and 3 flows into deployable code, a worker unit
that systemd accepts and scores as hardened, and an installer; hostile answers never bake."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.exceptions import FailedHookException
from prh_ingest.deploy import flows_file
from pytest_cookies.plugin import Cookies
from support import package
from support.baking import baked, cookiecutter_cli, readme_worker_install, sudo_stand_in
from support.commands import BIN, REPO_DIR, run, run_python
from support.git import bare_repo
from support.systemd import exposure, read_env_file, with_exec_start
from support.warehouse import CLINIC_CAL, FLOW_SETS, UNIT, WAREHOUSE_TEMPLATE_DIR, dry_run_env

MAX_EXPOSURE = 2.5
JINJA = re.compile(r"\{\{-?\s*cookiecutter\.|\{%-?\s*(if|for|end|set|raw)")


@pytest.fixture(scope="module", params=list(FLOW_SETS), ids=list(FLOW_SETS))
def flow_set(request: pytest.FixtureRequest, cookies_session: Cookies) -> tuple:
    """(flows, warehouse) for each flow set, baked once per module."""
    flows = FLOW_SETS[request.param]
    result = cookies_session.bake(extra_context={"flows": flows}, template=WAREHOUSE_TEMPLATE_DIR)
    assert result.exit_code == 0, result.exception
    return flows, result.project_path


def load_prw_deploy(warehouse: Path) -> Any:
    """Import a baked prw_deploy.py (under a name of its own), for the Warehouse it names."""
    name = f"prw_deploy_{warehouse.parent.name}"
    spec = importlib.util.spec_from_file_location(name, warehouse / "prefect/prw_deploy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The README's screenshots (tests/systemd/test_tls_front.py and test_sign_in.py take them);
# copied, never rendered.
SCREENSHOTS = ("docs/prefect-ui-over-https.png", "docs/prefect-sign-in.png")


def texts(warehouse: Path) -> dict[str, str]:
    return {
        str(path.relative_to(warehouse)): path.read_text()
        for path in warehouse.rglob("*")
        if path.is_file() and path.suffix != ".png"
    }


@pytest.mark.parametrize("screenshot", SCREENSHOTS)
def test_the_readme_screenshot_is_a_small_png_copied_as_is(
    flow_set: tuple, screenshot: str
) -> None:
    _, warehouse = flow_set
    template = Path(WAREHOUSE_TEMPLATE_DIR) / "{{cookiecutter.warehouse_slug}}" / screenshot
    png = (warehouse / screenshot).read_bytes()
    assert png == template.read_bytes() and png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) < 200_000
    assert f"]({screenshot})" in (warehouse / "README.md").read_text()


def test_bakes_every_file_fully_rendered(flow_set: tuple) -> None:
    _, warehouse = flow_set
    expected = {
        ".github/workflows/deploy.yml",
        ".gitignore",
        "README.md",
        "prefect/prw_deploy.py",
        "prefect/flows.json",
        "requirements-deploy.txt",
        "constraints-worker.txt",
        "requirements-worker.txt",
        "requirements-server.txt",
        "ruff.toml",
        "scripts/backup-server.sh",
        "scripts/install-server.sh",
        "scripts/install-worker.sh",
        "scripts/check-server.py",
        "scripts/regenerate.py",
        "scripts/verify-units.sh",
        "nginx/prefect-front.conf",
        "front/apache.conf",
        "front/directory.env.example",
        "front/gate.py",
        "front/prefect-audit.logrotate",
        "front/roles.toml",
        "front/sign-in/index.html",
        "front/sign-in/sign-in.js",
        "front/sign-in/sign-in.css",
        "front/sign-in/idle.js",
        "scripts/audit.py",
        "systemd/prefect-gate.service",
        "systemd/prefect-sign-in.service",
        "systemd/prefect-server.service.d/unix-socket.conf",
        "systemd/prefect-front.service",
        f"systemd/{UNIT}",
        "systemd/prefect-worker-ingest.env.example",
        "systemd/prefect-server.service",
        "systemd/prefect-services.service",
        "systemd/prefect-server.env.example",
    }
    assert set(texts(warehouse)) == expected
    leftovers = [name for name, text in texts(warehouse).items() if JINJA.search(text)]
    assert leftovers == []
    for script in (
        "install-worker.sh",
        "install-server.sh",
        "backup-server.sh",
        "verify-units.sh",
        "audit.py",
    ):
        assert os.access(warehouse / "scripts" / script, os.X_OK)


def test_flows_render_one_entry_each_with_values_intact(flow_set: tuple) -> None:
    """Quotes, URLs with & and None/True survive rendering exactly (values are never pasted raw)."""
    flows, warehouse = flow_set
    module = load_prw_deploy(warehouse)
    loaded = flows_file.load(module.WAREHOUSE.flows_file, module.WAREHOUSE.timezone)
    rendered = {entry.deployment: entry for entry in loaded}
    assert sorted(rendered) == sorted(flows)
    for name, answer in flows.items():
        entry = rendered[name]
        assert (entry.repo, entry.entrypoint, entry.cron) == (
            answer["repo"],
            answer["entrypoint"],
            answer["cron"],
        )
        assert entry.branch == answer.get("branch", "main")
        assert entry.timezone == answer.get("timezone", "UTC")
        assert entry.parameters == answer.get("parameters", {})
        assert entry.env == answer.get("env", {})
        assert entry.concurrency_limit == answer.get("concurrency_limit", 1)
    assert (module.WAREHOUSE.work_pool, module.WAREHOUSE.slug) == ("ingest", warehouse.name)
    assert module.WAREHOUSE.flows_file == warehouse / "prefect/flows.json"


def test_dry_run_lists_each_deployment_without_a_server(flow_set: tuple, tmp_path: Path) -> None:
    flows, warehouse = flow_set
    result = run_python(["prefect/prw_deploy.py", "--dry-run"], warehouse, dry_run_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(flows)} deployment(s) for work pool 'ingest'" in result.stdout
    for name, answer in flows.items():
        block = result.stdout.split(f"\n{name}\n", 1)[1].split("\n\n", 1)[0]
        assert answer["entrypoint"] in block
        next_runs = block.split("next runs:", 1)[1].splitlines()[0]
        assert len(next_runs.split(", ")) == 3, block
    if "clinic-cal-epic-ingest" in flows:
        assert "0 6 * * * = At 06:00 AM (UTC)" in result.stdout
    if "prh-dash-ingest" in flows:
        assert "At 05:30 AM, Monday through Friday (America/Puerto_Rico)" in result.stdout
        assert " AST" in result.stdout  # next runs shown in the flow's own timezone
    assert "Dry run: nothing was deployed." in result.stdout


def test_the_readmes_flow_edits_run_as_written(cookies: Cookies, tmp_path: Path) -> None:
    """The README's --add block and its --remove command, in a warehouse without flows."""
    warehouse = baked(cookies.bake(template=WAREHOUSE_TEMPLATE_DIR))
    section = (warehouse / "README.md").read_text().split("## Add, change or remove a flow")[1]
    add_block = section.split("```\n")[1]
    remove = re.search(r"`(python prefect/prw_deploy\.py --remove [a-z-]+)`", section)[1]
    env = {**dry_run_env(tmp_path), "PATH": f"{BIN}:{os.environ['PATH']}"}
    added = run(["bash", "-euc", add_block], warehouse, env)
    assert added.returncode == 0, added.stdout + added.stderr
    flows = json.loads((warehouse / "prefect/flows.json").read_text())
    assert flows == flows_file.completed(CLINIC_CAL, "UTC")
    removed = run(["bash", "-euc", remove], warehouse, env)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert json.loads((warehouse / "prefect/flows.json").read_text()) == {}


def test_generated_code_passes_ruff(flow_set: tuple) -> None:
    _, warehouse = flow_set
    result = run([str(BIN / "ruff"), "check", "--no-cache", "."], warehouse)
    assert result.returncode == 0, result.stdout + result.stderr


# The template's default `prh_ingest` answer (tests bake with this checkout's wheel instead:
# tests/support/baking.py's user config), and the pin it gives: the release tag of the
# version the template pins.
DEFAULT_ENGINE = json.loads((Path(WAREHOUSE_TEMPLATE_DIR) / "cookiecutter.json").read_text())[
    "prh_ingest"
]


def test_worker_requirements_match_the_tested_pins(cookies: Cookies) -> None:
    answers = {"prh_ingest": DEFAULT_ENGINE}
    warehouse = baked(cookies.bake(extra_context=answers, template=WAREHOUSE_TEMPLATE_DIR))
    tested = (REPO_DIR / "requirements.txt").read_text().splitlines()
    *worker, engine = [
        line
        for line in (warehouse / "requirements-worker.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert worker[0] == next(line for line in tested if line.startswith("prefect==")).replace(
        "prefect==", "prefect[shell,aws]=="
    )
    assert set(worker[1:]) <= set(tested)
    assert {line.split("==")[0] for line in worker[1:]} >= {"prefect-shell", "prefect-aws", "uv"}
    assert engine == ENGINE_PIN


ENGINE_PIN = (
    f"prh-ingest @ git+https://github.com/org/prh-ingest-template.git@v{package.version()}"
    "#subdirectory=prh-ingest"
)


def test_the_pinned_engine_version_is_the_packages() -> None:
    """One owner: the version the warehouse pins is prh-ingest/pyproject.toml's."""
    answers = json.loads((Path(WAREHOUSE_TEMPLATE_DIR) / "cookiecutter.json").read_text())
    assert answers["__versions"]["prh-ingest"] == package.version()


RELEASE = "git+https://github.com/org/prh-ingest-template.git"
WHEEL = "file:///srv/wheels/prh_ingest-0.1.0-py3-none-any.whl"


@pytest.mark.parametrize(
    ("answer", "pin"),
    [
        (None, f"prh-ingest @ {RELEASE}@v{package.version()}#subdirectory=prh-ingest"),
        ("index", f"prh-ingest=={package.version()}"),  # a hospital index
        (WHEEL, f"prh-ingest @ {WHEEL}"),
    ],
    ids=["release-tag", "index", "a-wheel"],
)
def test_the_engine_answer_is_pinned_in_both_venvs(
    answer: str | None, pin: str, cookies: Cookies
) -> None:
    """The `prh_ingest` answer, as an ingest project takes it, pinned to the template's
    version of the package (prh_ingest.naming.package_requirement, for both templates)."""
    answers = {"prh_ingest": answer or DEFAULT_ENGINE}
    warehouse = baked(cookies.bake(extra_context=answers, template=WAREHOUSE_TEMPLATE_DIR))
    worker = (warehouse / "requirements-worker.txt").read_text().splitlines()
    assert worker[-1] == pin
    assert "-r requirements-worker.txt" in (warehouse / "requirements-deploy.txt").read_text()


def test_worker_constraints_are_the_tested_set(cookies: Cookies) -> None:
    """The worker installs with -c constraints-worker.txt: every transitive pin we test."""
    warehouse = baked(cookies.bake(template=WAREHOUSE_TEMPLATE_DIR))

    def pins(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if line and line[0] != "#"]

    assert pins(warehouse / "constraints-worker.txt") == pins(REPO_DIR / "constraints.txt")


def test_the_dry_run_runs_on_the_wheel_the_warehouse_pins(cookies: Cookies, tmp_path: Path) -> None:
    """The deploy tool as a warehouse installs it (the pinned wheel of this checkout, imported
    from the wheel itself), not the checkout's source."""
    answers = {"flows": CLINIC_CAL, "prh_ingest": package.answer()}
    warehouse = baked(cookies.bake(extra_context=answers, template=WAREHOUSE_TEMPLATE_DIR))
    pin = (warehouse / "requirements-worker.txt").read_text().splitlines()[-1]
    assert pin == f"prh-ingest @ {package.wheel().as_uri()}"
    env = {**dry_run_env(tmp_path), "PYTHONPATH": str(package.wheel())}
    where = run_python(["-c", "import prh_ingest.deploy as d; print(d.__file__)"], warehouse, env)
    assert where.stdout.startswith(f"{package.wheel()}/prh_ingest/deploy/"), where.stdout
    result = run_python(["prefect/prw_deploy.py", "--dry-run"], warehouse, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\nclinic-cal-epic-ingest\n" in result.stdout


# --- the worker unit and its installer --------------------------------------------------------


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory, cookies_session: Cookies
) -> tuple[Path, Path, str]:
    """A default warehouse (the template's engine answer too, as a project made with the
    cookiecutter command has it) and `install-worker.sh --dry-run ROOT` run twice."""
    tmp = tmp_path_factory.mktemp("install")
    answers = {"prh_ingest": DEFAULT_ENGINE}
    warehouse = baked(cookies_session.bake(extra_context=answers, template=WAREHOUSE_TEMPLATE_DIR))
    root = tmp / "root"
    env = {**os.environ, "WORKER_LIMIT": ""}  # empty: the CPU count decides
    for _ in range(2):
        result = run(["scripts/install-worker.sh", "--dry-run", str(root)], warehouse, env)
        assert result.returncode == 0, result.stdout + result.stderr
    return warehouse, root, result.stdout


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_writes_unit_limit_and_private_env_file(installed: tuple) -> None:
    warehouse, root, _ = installed
    unit = root / "etc/systemd/system" / UNIT
    limit = root / f"etc/systemd/system/{UNIT}.d/limit.conf"
    env_file = root / "etc/prefect-worker/ingest.env"
    assert unit.read_bytes() == (warehouse / "systemd" / UNIT).read_bytes()
    assert (mode(unit), mode(limit), mode(env_file)) == (0o644, 0o644, 0o600)
    assert f"Environment=WORKER_LIMIT={len(os.sched_getaffinity(0))}\n" in limit.read_text()
    assert "PREFECT_API_URL=https://127.0.0.1:4200/api\n" in env_file.read_text()


def test_install_prints_the_systemd_steps_in_order(installed: tuple) -> None:
    _, root, output = installed
    steps = [
        f"+ python3 -m venv {root}/opt/prefect-worker-ingest/venv",
        f"+ {root}/opt/prefect-worker-ingest/venv/bin/pip install --quiet -r",
        "-c",
        "constraints-worker.txt",
        "+ systemctl daemon-reload",
        f"+ systemctl enable {UNIT}",
        f"+ systemctl start {UNIT}",
        f"+ systemctl --no-pager status {UNIT}",
        f"journalctl -fu {UNIT}",
    ]
    positions = [output.index(step) for step in steps]
    assert positions == sorted(positions)


def test_install_again_keeps_the_filled_in_env_file(installed: tuple) -> None:
    warehouse, root, _ = installed
    env_file = root / "etc/prefect-worker/ingest.env"
    env_file.write_text("PREFECT_API_URL=https://prefect.example.org/api\nPREFECT_API_KEY=k\n")
    env_file.chmod(0o644)
    env = {**os.environ, "WORKER_LIMIT": "3"}
    result = run(["scripts/install-worker.sh", "--dry-run", str(root)], warehouse, env)
    assert result.returncode == 0, result.stderr
    assert "PREFECT_API_KEY=k" in env_file.read_text()
    assert mode(env_file) == 0o600
    limit = root / f"etc/systemd/system/{UNIT}.d/limit.conf"
    assert "Environment=WORKER_LIMIT=3\n" in limit.read_text()


@pytest.mark.parametrize("limit", ["0", "four", "2; rm -rf /"])
def test_install_refuses_a_bad_worker_limit(limit: str, installed: tuple, tmp_path: Path) -> None:
    warehouse, _, _ = installed
    env = {**os.environ, "WORKER_LIMIT": limit}
    result = run(["scripts/install-worker.sh", "--dry-run", str(tmp_path)], warehouse, env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: WORKER_LIMIT must be a positive whole number")
    assert list(tmp_path.iterdir()) == []


# --- a dependency_manager=none project's pinned requirements (--requirements) ------------------


@pytest.mark.parametrize("manager", ["none", "pipenv"])
def test_the_worker_install_a_project_readme_gives_runs_as_written(
    manager: str, installed: tuple, tmp_path: Path
) -> None:
    """The lines of the project README's worker install, which its post-generation message
    prints too and tests/systemd runs for real: here as written, from this warehouse, with a
    `sudo` that adds --dry-run. A none project's pins (PostgreSQL: the most of them) agree
    with the worker's constraints and go into the worker venv's one pip run."""
    warehouse, _, _ = installed
    repo = tmp_path / "git" / "clinic-cal.git"
    answers = [f"dependency_manager={manager}", "database=postgresql", f"git_repo_url={repo}"]
    made = cookiecutter_cli(tmp_path / "out", *answers)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "out" / "clinic-cal"
    (tmp_path / "git").mkdir()
    bare_repo(project, tmp_path / "git")
    commands = readme_worker_install(project)
    assert textwrap.indent(commands, "    ") in made.stdout
    sudo = sudo_stand_in(tmp_path / "bin", "--dry-run", str(tmp_path / "root"))
    env = {**os.environ, "PATH": f"{sudo}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    result = run(["bash", "-euc", commands], warehouse, {**env, "WORKER_LIMIT": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    pip = next(line.split() for line in result.stdout.splitlines() if " install --quiet " in line)
    files = [Path(pip[index + 1]) for index, word in enumerate(pip) if word in ("-r", "-c")]
    if manager == "none":
        assert commands.count("\n") == 2
        install = 'sudo scripts/install-worker.sh --requirements "$deps/requirements.txt"\n'
        assert commands.endswith(install)
        worker, clone, constraints = files
        assert clone.name == "requirements.txt" and clone.parent.parent == tmp_path
        assert clone.read_text() == (project / "requirements.txt").read_text()
        assert "psycopg-binary==" in clone.read_text()
    else:
        assert commands == "sudo scripts/install-worker.sh\n"
        worker, constraints = files
    assert (worker.name, constraints.name) == ("requirements-worker.txt", "constraints-worker.txt")


CALAMINE_PIN = next(
    line.split("==")[1]
    for line in (REPO_DIR / "constraints.txt").read_text().splitlines()
    if line.startswith("python-calamine==")
)
BAD_REQUIREMENTS = {
    # case: (the file, what its one error line says after its name)
    "another-pin": (
        "sqlalchemy==2.1.9\nPython_Calamine==0.0.1  # normalized as pip does\n",
        f"line 2 pins Python_Calamine==0.0.1 but constraints-worker.txt pins "
        f"Python_Calamine=={CALAMINE_PIN}: update the project or this checkout so they agree",
    ),
    "a-range": ("SQLAlchemy>=2\n", "line 1 is not one pinned package (name==version)"),
    "an-include": ("# ours\n\n-r other.txt\n", "line 3 is not one pinned package"),
    "no-file": (None, "no such readable file"),
    "another-engine": (
        "sqlalchemy==2.1.9\nprh-ingest[postgresql]==0.0.9  # an older project\n",
        f"line 2 pins prh-ingest==0.0.9 but requirements-worker.txt pins "
        f"{ENGINE_PIN.replace(' ', '')}: one prh-ingest per worker; update the project or this "
        "checkout so they agree",
    ),
}


def test_install_takes_a_project_pinned_to_the_warehouses_engine(
    installed: tuple, tmp_path: Path
) -> None:
    """The same pin (its extras aside, a comment after it) passes and goes into the one pip run."""
    warehouse, _, _ = installed
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        f"sqlalchemy==2.1.9\n{ENGINE_PIN.replace(' @', '[postgresql] @')}  # the engine\n"
    )
    argv = ["--requirements", str(requirements), "--dry-run", str(tmp_path / "root")]
    env = {**os.environ, "WORKER_LIMIT": ""}
    result = run(["scripts/install-worker.sh", *argv], warehouse, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f" -r {requirements} -c " in result.stdout


@pytest.mark.parametrize("case", list(BAD_REQUIREMENTS))
def test_install_refuses_bad_requirements_in_one_line_before_writing_anything(
    case: str, installed: tuple, tmp_path: Path
) -> None:
    warehouse, _, _ = installed
    text, message = BAD_REQUIREMENTS[case]
    requirements = tmp_path / "requirements.txt"
    if text is not None:
        requirements.write_text(text)
    root = tmp_path / "root"
    argv = ["--requirements", str(requirements), "--dry-run", str(root)]
    env = {**os.environ, "WORKER_LIMIT": ""}
    result = run(["scripts/install-worker.sh", *argv], warehouse, env)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: --requirements {requirements}: {message}"), line
    assert not root.exists() and result.stdout == ""


def test_unit_runs_the_pool_worker_as_the_user_with_a_per_host_name(cookies: Cookies) -> None:
    answers = {"work_pool": "etl", "worker_user": "svc-prefect"}
    warehouse = baked(cookies.bake(extra_context=answers, template=WAREHOUSE_TEMPLATE_DIR))
    text = (warehouse / "systemd/prefect-worker-etl.service").read_text()
    assert (
        "ExecStart=/opt/prefect-worker-etl/venv/bin/prefect worker start --pool etl"
        " --type process --limit ${WORKER_LIMIT} --name etl-%H\n"
    ) in text
    for line in [
        "User=svc-prefect",
        "EnvironmentFile=/etc/prefect-worker/etl.env",
        "Environment=PATH=/opt/prefect-worker-etl/venv/bin:",
        "Restart=always",
        "KillMode=control-group",
        "BindPaths=/home/svc-prefect",
        "PrivateTmp=yes",
        "Environment=PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30",
        "Environment=PREFECT_WORKER_QUERY_SECONDS=1",
    ]:
        assert f"\n{line}" in text
    # Flow runs are stopped first (and again each second), while the worker can still record
    # them as Crashed.
    assert (
        '\nExecStop=/bin/sh -c \'while pgrep -P "$$MAINPID" >/dev/null; do'
        ' for run in $(pgrep -P "$$MAINPID"); do pkill -TERM -g'
    ) in text


def test_systemd_accepts_the_unit_with_its_drop_in(installed: tuple, tmp_path: Path) -> None:
    """`systemd-analyze verify` exits 0 even on unknown keys, so any output is a failure."""
    warehouse, root, _ = installed
    unit = tmp_path / UNIT
    text = with_exec_start((warehouse / "systemd" / UNIT).read_text(), BIN / "prefect")
    # ExecStartPre= runs the server check with the worker venv's python: here this venv's.
    unit.write_text(text.replace("/opt/prefect-worker-ingest/venv/bin/python", str(BIN / "python")))
    (tmp_path / f"{UNIT}.d").mkdir()
    (tmp_path / f"{UNIT}.d/limit.conf").write_bytes(
        (root / f"etc/systemd/system/{UNIT}.d/limit.conf").read_bytes()
    )
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}
    result = run(["systemd-analyze", "verify", str(unit)], tmp_path, env)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_unit_is_hardened(cookies: Cookies) -> None:
    warehouse = baked(cookies.bake(template=WAREHOUSE_TEMPLATE_DIR))
    assert exposure(warehouse / "systemd" / UNIT) <= MAX_EXPOSURE


def test_unit_lets_exec_stop_see_the_flow_runs(cookies: Cookies) -> None:
    """PrivateUsers= gives ExecStop= its own user namespace, where ProtectProc=invisible hides
    the worker's processes: the stop would then strand runs in Running (tests/systemd proves
    the stop under a real systemd; this keeps the pair from coming back)."""
    warehouse = baked(cookies.bake(template=WAREHOUSE_TEMPLATE_DIR))
    text = (warehouse / "systemd" / UNIT).read_text()
    assert "\nProtectProc=invisible\n" in text
    assert "\nPrivateUsers=yes\n" not in text


# --- hostile and malformed answers ------------------------------------------------------------

ENTRY = CLINIC_CAL["clinic-cal-epic-ingest"]
# Every rule of an entry is tested in-process (prh-ingest/tests/test_deploy_flows_file.py):
# here, that the pre-generation hook applies them to the `flows` answer.
HOSTILE_FLOWS = {
    "cron-out-of-range": ({"x": {**ENTRY, "cron": "0 25 * * *"}}, "not a valid cron"),
    "repo-command-substitution": ({"x": {**ENTRY, "repo": "https://h/$(id).git"}}, "git URL"),
    "env-secret-url-password": (
        {"x": {**ENTRY, "env": {"CLINIC_CAL_DATABASE_URL": "postgresql://etl:pw@db/prh"}}},
        "Secret block",
    ),
    "deployment-quote": ({"x'y": ENTRY}, "flows key"),
}
HOSTILE_ANSWERS = {
    "pool-shell": ({"work_pool": "ingest; rm -rf /"}, "work_pool"),
    "user-quote": ({"worker_user": "deploy'"}, "worker_user"),
    "api-url-backticks": ({"prefect_api_url": "http://`id`/api"}, "prefect_api_url"),
    "server-host-shell": ({"server_host": "0.0.0.0 --reload"}, "server_host"),
    "server-port-privileged": ({"server_port": "80"}, "between 1024 and 65535"),
    "server-port-text": ({"server_port": "42OO"}, "whole number"),
    "retention-zero": ({"retention_days": "0"}, "retention_days"),
    "timezone-unknown": ({"timezone": "Nowhere"}, "IANA timezone"),
    "flows-not-a-mapping": ({"flows": ["x"]}, "JSON object"),
    "engine-requirement": ({"prh_ingest": "prh-ingest>=0.1"}, "is not a package source"),
    "engine-credentials": (
        {"prh_ingest": "git+https://user:token@h/prh-ingest-template.git"},
        "is not a package source",
    ),
    "engine-shell": ({"prh_ingest": "https://h/x.whl; rm -rf /"}, "is not a package source"),
}
REJECTED = [
    pytest.param({"flows": flows}, message, id=f"flows-{case}")
    for case, (flows, message) in HOSTILE_FLOWS.items()
] + [
    pytest.param(answers, message, id=case) for case, (answers, message) in HOSTILE_ANSWERS.items()
]


def test_env_without_secrets_is_accepted(cookies: Cookies) -> None:
    """A user name in a URL is no secret; the worker's EnvironmentFile holds the password."""
    url = "postgresql+psycopg://etl@db.prh.org/warehouse"
    env = {"CLINIC_CAL_DATABASE_URL": url, "TOKENS": "3"}
    answers = {"flows": {"x": {**ENTRY, "env": env}}}
    warehouse = baked(cookies.bake(extra_context=answers, template=WAREHOUSE_TEMPLATE_DIR))
    assert url in (warehouse / "prefect" / "flows.json").read_text()


@pytest.mark.parametrize(("answers", "message"), REJECTED)
def test_hostile_answers_are_rejected_with_one_line_and_nothing_written(
    answers: dict, message: str, cookies: Cookies, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    result = cookies.bake(extra_context=answers, template=WAREHOUSE_TEMPLATE_DIR)
    assert result.exit_code != 0 and isinstance(result.exception, FailedHookException)
    assert result.project_path is None
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], errors
    # pytest-cookies bakes into <tmp_path>/cookies/bake00: left empty
    assert [path.name for path in (tmp_path / "cookies").rglob("*")] == ["bake00"]


# --- the server units, their settings and the notification automation --------------------------

SERVER_UNITS = ("prefect-server.service", "prefect-services.service", "prefect-front.service")
SERVER_ANSWERS = {
    "server_host": "0.0.0.0",  # noqa: S104 (behind a load balancer)
    "server_port": "8443",
    "prefect_api_url": "https://prefect.example.org/api",
    "retention_days": "14",
}


@pytest.fixture(scope="module")
def server_warehouse(cookies_session: Cookies) -> Path:
    return baked(
        cookies_session.bake(extra_context=SERVER_ANSWERS, template=WAREHOUSE_TEMPLATE_DIR)
    )


def test_server_units_start_api_and_services_apart(server_warehouse: Path) -> None:
    systemd = server_warehouse / "systemd"
    api = (systemd / "prefect-server.service").read_text()
    services = (systemd / "prefect-services.service").read_text()
    assert (
        "\nExecStart=/opt/prefect-server/venv/bin/prefect server start"
        " --host 127.0.0.1 --port 8444 --no-services\n"  # behind the TLS front on 8443
    ) in api
    assert "\nExecStart=/opt/prefect-server/venv/bin/prefect server services start\n" in services
    for text in (api, services):
        for line in (
            "User=prefect",
            "EnvironmentFile=/etc/prefect-server/server.env",
            "Restart=always",
            "After=network-online.target postgresql.service redis-server.service",
            "StateDirectory=prefect-server",
        ):
            assert f"\n{line}\n" in text


def test_server_settings_use_postgres_redis_auth_and_retention(server_warehouse: Path) -> None:
    settings = read_env_file(server_warehouse / "systemd/prefect-server.env.example")
    assert settings["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert settings["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false"
    for name in ("PREFECT_MESSAGING_BROKER", "PREFECT_MESSAGING_CACHE"):
        assert settings[name] == "prefect_redis.messaging"
    assert settings["PREFECT_SERVER_EVENTS_CAUSAL_ORDERING"] == "prefect_redis.ordering"
    assert settings["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
    assert settings["PREFECT_SERVER_DOCKET_URL"].startswith("redis://")
    assert settings["PREFECT_SERVER_API_AUTH_STRING"] == "admin:CHANGE-ME-AUTH-PASSWORD"
    assert settings["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
    assert settings["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"] == "https://prefect.example.org"
    assert settings["PREFECT_UI_URL"] == "https://prefect.example.org"
    assert settings["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert settings["PREFECT_SERVER_EVENTS_RETENTION_PERIOD"] == "P14D"
    assert settings["PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD"] == str(14 * 86400)


def test_prefect_reads_every_server_setting_as_meant(server_warehouse: Path) -> None:
    """Prefect 3.9 itself parses the file: a misspelt name or a bad value fails here."""
    settings = read_env_file(server_warehouse / "systemd/prefect-server.env.example")
    code = """
import json
from prefect.settings import get_current_settings
from prefect_redis.client import RedisMessagingSettings
s = get_current_settings()
print(json.dumps([
    s.server.database.migrate_on_start,
    s.server.events.messaging_broker, s.server.events.causal_ordering,
    s.server.concurrency.lease_storage, s.server.worker_channel.cleanup_queue_storage,
    s.server.api.csrf_protection_enabled, s.server.api.cors_allowed_origins,
    s.server.analytics_enabled, s.server.events.retention_period.days,
    sorted(s.server.services.db_vacuum.enabled_vacuum_types),
    s.server.services.db_vacuum.retention_period.days,
    RedisMessagingSettings().port,
]))
"""
    env = {**dry_run_env(server_warehouse.parent), **settings}
    result = run_python(["-W", "error", "-c", code], server_warehouse, env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        False,
        "prefect_redis.messaging",
        "prefect_redis.ordering",
        "prefect_redis.lease_storage",
        "prefect_redis.cleanup_queue",
        True,
        "https://prefect.example.org",
        False,
        14,
        ["events", "flow_runs", "orphans"],
        14,
        6379,
    ]


@pytest.mark.parametrize("unit", SERVER_UNITS)
def test_systemd_accepts_the_server_unit(unit: str, server_warehouse: Path, tmp_path: Path) -> None:
    text = with_exec_start((server_warehouse / "systemd" / unit).read_text(), BIN / "prefect")
    (tmp_path / unit).write_text(text)
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}
    result = run(["systemd-analyze", "verify", str(tmp_path / unit)], tmp_path, env)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("unit", SERVER_UNITS)
def test_server_unit_is_hardened(unit: str, server_warehouse: Path) -> None:
    assert exposure(server_warehouse / "systemd" / unit) <= MAX_EXPOSURE


def test_server_requirements_are_prefect_with_redis_at_the_tested_pin(
    server_warehouse: Path,
) -> None:
    tested = (REPO_DIR / "requirements.txt").read_text().splitlines()
    prefect_pin = next(line for line in tested if line.startswith("prefect=="))
    server = [
        line
        for line in (server_warehouse / "requirements-server.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert server == [prefect_pin.replace("prefect==", "prefect[redis]==")]
    constraints = (REPO_DIR / "constraints.txt").read_text().splitlines()
    assert "prefect-redis==0.3.0" in constraints


def test_a_webhook_url_never_reaches_the_repo(cookies: Cookies) -> None:
    """Warehouses made before kept the URL in their answers (notify_url); it is no longer
    an answer, so baking or updating with it writes it nowhere."""
    url = "https://hooks.slack.com/services/T0/B0/token"
    warehouse = baked(
        cookies.bake(extra_context={"notify_url": url}, template=WAREHOUSE_TEMPLATE_DIR)
    )
    assert [name for name, text in texts(warehouse).items() if "T0/B0/token" in text] == []


def test_an_empty_cron_bakes_an_unscheduled_entry(cookies, tmp_path: Path) -> None:
    """`"cron": ""` is how an entry drops its schedule (the deploy deletes it on the server)."""
    flows = {"clinic-cal-epic-ingest": {**CLINIC_CAL["clinic-cal-epic-ingest"], "cron": ""}}
    result = cookies.bake(
        extra_context={"flows": flows}, template=str(REPO_DIR / "warehouse-template")
    )
    assert result.exit_code == 0, result.exception
    warehouse = Path(result.project_path)
    assert (
        json.loads((warehouse / "prefect/flows.json").read_text())["clinic-cal-epic-ingest"]["cron"]
        == ""
    )
    dry_run = run_python(["prefect/prw_deploy.py", "--dry-run"], warehouse, dry_run_env(tmp_path))
    assert dry_run.returncode == 0, dry_run.stdout + dry_run.stderr
    assert "  schedule:   none (cron is empty" in dry_run.stdout
    assert "  next runs:  -\n" in dry_run.stdout
