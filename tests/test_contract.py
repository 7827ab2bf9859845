"""The naming contract: what an ingest project prints, the warehouse takes as is.

The hooks of both templates import prh_ingest.naming, the templates' files render names
through its filters (contract.jinja); boundary answers go through both templates from the
command line, the way a user types them, and `prw_deploy.py --dry-run` lists what the
ingest template printed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import prh_ingest.naming
import pytest
from jinja2 import Environment
from support.baking import cookiecutter_cli
from support.commands import BIN, REPO_DIR, run, run_python
from support.warehouse import dry_run_env

WAREHOUSE_CLI = (str(BIN / "cookiecutter"), str(REPO_DIR), "--no-input")
ADD_LINE = re.compile(r"python prefect/prw_deploy\.py --add '(\{.*\})'$", re.MULTILINE)

# (id, answers): the longest names allowed, digits, and every accepted URL form.
ACCEPTED = [
    ("slug-40-source-15", {"project_slug": "a" * 39 + "b", "source_name": "s" * 15}),
    ("slug-15-source-40", {"project_slug": "c" * 15, "source_name": "epic-" + "x" * 35}),
    ("digits", {"project_slug": "clinic2-cal-3", "source_name": "epic2-0"}),
    ("extra-source-at-limit", {"project_slug": "p" * 40, "extra_sources": {"e" * 15: "csv"}}),
    ("legacy-name-63", {"project_slug": "prh-dash", "legacy_flow_name": "prh_dash-" + "l" * 54}),
    ("url-https", {"project_slug": "u-https", "git_repo_url": "https://git.prh.org/d/u.git"}),
    ("url-https-port", {"project_slug": "u-port", "git_repo_url": "https://g.prh.org:8443/d/u"}),
    ("url-http", {"project_slug": "u-http", "git_repo_url": "http://gitlab.prh.local/d/u.git"}),
    ("url-ssh-no-user", {"project_slug": "u-ssh", "git_repo_url": "ssh://host/org/repo.git"}),
    ("url-ssh-user-port", {"project_slug": "u-ssh2", "git_repo_url": "ssh://git@h:2222/o/r.git"}),
    ("url-scp", {"project_slug": "u-scp", "git_repo_url": "git@github.com:org/u-scp.git"}),
    ("url-file", {"project_slug": "u-file", "git_repo_url": "file:///srv/git/u-file.git"}),
    ("url-path", {"project_slug": "u-path", "git_repo_url": "/srv/git/u-path.git"}),
]
# (id, answers, the one error line's text): refused by the ingest template before a file.
REFUSED = [
    ("flow-name-64", {"project_slug": "a" * 40, "source_name": "s" * 16}, "at most 63 allowed"),
    ("extra-flow-64", {"project_slug": "a" * 40, "extra_sources": {"e" * 16: "csv"}}, "at most 63"),
    ("legacy-64", {"legacy_flow_name": "l" * 64}, "legacy_flow_name is 64 characters long"),
    ("url-password", {"git_repo_url": "https://u:pw@git.prh.org/d/x.git"}, "not a git URL"),
    ("url-dotdot", {"git_repo_url": "ssh://host/org/../x.git"}, "not a git URL"),
]


def cli_answers(answers: dict[str, object]) -> list[str]:
    """key=value arguments; mappings as JSON text, as a user types them."""
    return [
        f"{key}={json.dumps(value) if isinstance(value, dict) else value}"
        for key, value in answers.items()
    ]


def printed_entries(stdout: str) -> dict[str, dict[str, str]]:
    entries: dict[str, dict[str, str]] = {}
    for text in ADD_LINE.findall(stdout):
        entries.update(json.loads(text))
    return entries


@pytest.fixture(scope="module")
def contract_site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every ACCEPTED project baked from the command line, its printed entries given to one
    warehouse as `flows=<JSON text>` on the command line, and that warehouse's dry run."""
    root = tmp_path_factory.mktemp("contract")
    entries: dict[str, dict[str, dict[str, str]]] = {}
    projects: dict[str, Path] = {}
    for case, answers in ACCEPTED:
        output = root / case
        output.mkdir()
        result = cookiecutter_cli(output, *cli_answers(answers))
        assert result.returncode == 0, f"{case}: {result.stderr}"
        entries[case] = printed_entries(result.stdout)
        (projects[case],) = output.iterdir()
    flows = {name: entry for printed in entries.values() for name, entry in printed.items()}
    baked = run(
        [
            *WAREHOUSE_CLI,
            "-o",
            str(root / "w"),
            "--directory",
            "warehouse-template",
            f"flows={json.dumps(flows)}",
        ],
        cwd=root,
    )
    assert baked.returncode == 0, baked.stderr
    warehouse = root / "w" / "prh-warehouse"
    dry_run = run_python(["prefect/prw_deploy.py", "--dry-run"], warehouse, dry_run_env(root))
    assert dry_run.returncode == 0, dry_run.stderr
    return {"entries": entries, "projects": projects, "warehouse": warehouse, "dry": dry_run}


@pytest.mark.parametrize("case", [case for case, _ in ACCEPTED])
def test_the_printed_entry_is_deployed_as_is(case: str, contract_site: dict) -> None:
    entries = contract_site["entries"][case]
    project: Path = contract_site["projects"][case]
    dry_run: subprocess.CompletedProcess[str] = contract_site["dry"]
    assert entries, "the ingest template printed no warehouse entry"
    flows = json.loads((contract_site["warehouse"] / "prefect/flows.json").read_text())
    for name, entry in entries.items():
        assert re.search(rf"^{re.escape(name)}$", dry_run.stdout, re.MULTILINE), dry_run.stdout
        assert f"  entrypoint: {entry['entrypoint']}\n" in dry_run.stdout
        assert f"  source:     {entry['repo']} (branch main)\n" in dry_run.stdout
        assert {key: flows[name][key] for key in entry} == entry
        path, function = entry["entrypoint"].split(":")
        signature = f"\ndef {function}(accept_short_load: bool = False) -> None:\n"
        assert signature in (project / path).read_text()


@pytest.mark.parametrize(("case", "answers", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_an_entry_the_warehouse_would_refuse_is_never_printed(
    case: str, answers: dict[str, object], message: str, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    result = cookiecutter_cli(output, *cli_answers(answers))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and len(errors) == 1 and message in errors[0], result.stderr
    assert list(output.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("a" * 63, True), ("a" * 64, False), ("x-1_y", True), ("1x", False), ("x--y", False)],
)
def test_both_templates_take_the_same_flow_names(name: str, accepted: bool, tmp_path: Path) -> None:
    """A runbook-era flow name the ingest template keeps is a deployment name the warehouse
    takes, and the other way round: one rule, one length."""
    ingest = cookiecutter_cli(tmp_path / "i", f"legacy_flow_name={name}")
    entry = {"repo": "/srv/git/x.git", "entrypoint": "prefect/x.py:x", "cron": "0 6 * * *"}
    warehouse = run(
        [
            *WAREHOUSE_CLI,
            "-o",
            str(tmp_path / "w"),
            "--directory",
            "warehouse-template",
            f"flows={json.dumps({name: entry})}",
        ],
        cwd=tmp_path,
    )
    assert (ingest.returncode == 0, warehouse.returncode == 0) == (accepted, accepted)


def test_the_filters_come_from_the_checkout_being_rendered(tmp_path: Path) -> None:
    """contract.jinja renders with the naming of its own checkout (the template commit), not
    the prh_ingest this process has imported, and leaves that one in place."""
    checkout = tmp_path / "template"
    shutil.copytree(REPO_DIR / "contract", checkout / "contract")
    package = checkout / "prh-ingest/src/prh_ingest"
    package.mkdir(parents=True)
    for name in ("__init__.py", "naming.py", "jinja.py"):
        shutil.copyfile(REPO_DIR / "prh-ingest/src/prh_ingest" / name, package / name)
    naming_file = package / "naming.py"
    naming_file.write_text(
        naming_file.read_text().replace('FLOW_SUFFIX = "-ingest"', 'FLOW_SUFFIX = "-load"')
    )
    spec = importlib.util.spec_from_file_location("checkout_jinja", checkout / "contract/jinja.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = {name: sys.modules[name] for name in sys.modules if name.startswith("prh_ingest")}

    environment = Environment(extensions=[module.Names])  # noqa: S701 (text, as cookiecutter)
    answers = {"project_slug": "clinic-cal", "source_name": "epic"}
    flow = environment.from_string("{{ cookiecutter | flow_name }}").render(cookiecutter=answers)

    assert flow == "clinic-cal-epic-load"
    assert prh_ingest.naming.flow_name("clinic-cal", "epic") == "clinic-cal-epic-ingest"
    assert {
        name: sys.modules[name] for name in sys.modules if name.startswith("prh_ingest")
    } == before
    # No bytecode of the package's source: cruft's next commit in the same clone reads it anew.
    # (contract/jinja.py's own comes from this test's exec_module, as from any import.)
    assert not list((checkout / "prh-ingest").rglob("__pycache__"))
