"""6. Local run overhead: `python prefect/<flow>.py` on the sample vs `python ingest.py` alone,
on Prefect's ephemeral default and against a running local server."""

from __future__ import annotations

from support.baking import FLOW_FILE
from support.services import offline_env

from benchmarks.common import (
    PYTHON,
    Comparison,
    Context,
    Section,
    progress,
    repeat,
    run_timed,
    with_server,
)
from benchmarks.deps import SYNC, Mode


def measure(ctx: Context) -> list[Section]:
    reps = ctx.sizes.repetitions
    section = Section(6, "Local run overhead: the flow script vs ingest.py alone (pipenv mode)")
    mode = Mode(ctx, "pipenv", folder="local")
    progress("local: building the shared venv once")
    mode.time(SYNC)
    venv_python = str(mode.venv / "bin" / "python")
    ephemeral = offline_env(mode.root / "prefect-home", base=mode.env)
    served = with_server(mode.env, ctx.server)

    def timed(argv: list[str], env: dict[str, str]) -> float:
        return run_timed(argv, cwd=mode.project, env=env).seconds

    progress(f"local: ingest.py alone, flow on the ephemeral server, flow with a server, x{reps}")
    timed([PYTHON, FLOW_FILE], ephemeral)  # untimed: creates the ephemeral server's database
    alone = repeat(reps, lambda: timed([venv_python, "ingest.py"], mode.env))
    on_ephemeral = repeat(reps, lambda: timed([PYTHON, FLOW_FILE], ephemeral))
    on_server = repeat(reps, lambda: timed([PYTHON, FLOW_FILE], served))
    section.add("alone", "`python ingest.py` alone (the venv's python)", "s", alone)
    section.add("ephemeral", f"`python {FLOW_FILE}`, ephemeral default", "s", on_ephemeral)
    section.add("server", f"`python {FLOW_FILE}`, PREFECT_API_URL = local server", "s", on_server)
    section.add(
        "ephemeral-overhead",
        "flow overhead, ephemeral (flow - ingest.py alone)",
        "s",
        [flow - plain for flow, plain in zip(on_ephemeral, alone, strict=True)],
    )
    section.add(
        "server-overhead",
        "flow overhead, local server (flow - ingest.py alone)",
        "s",
        [flow - plain for flow, plain in zip(on_server, alone, strict=True)],
    )
    section.comparisons += [
        Comparison("local server vs ephemeral default", "server", "ephemeral"),
        Comparison("ingest.py alone vs flow on a local server", "alone", "server"),
    ]
    section.notes.append(
        "The sample is the bake's data/sample.xlsx (20 rows), so the figures are overhead: "
        "Prefect's import and start, the ShellOperation's bash, the warm `prefect/sync-venv.sh` "
        "and `pipenv run`. The ephemeral default starts a temporary Prefect server in a "
        "subprocess on every run (its database already exists: one untimed run first); with "
        "PREFECT_API_URL set the script only talks to the running server. A developer iterating "
        "on ingest.py should run `pipenv run python ingest.py` (or the venv's python) directly; "
        "to try the flow itself, keep one `prefect server start` running and export "
        "PREFECT_API_URL."
    )
    return [section]
