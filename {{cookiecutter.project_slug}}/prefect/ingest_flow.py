"""What every source's flow does (the template's code): each `prefect/<flow>.py` only names
its source and calls `load_source`.

A flow runs `ingest.py <source>` in one shell step (prefect-shell's ShellOperation), the way
the team's runbook does, but fail-fast and from the project folder whatever the current
directory. Settings come from `prefect/.env`; variables already in the environment win, so a
worker's environment or a deployment's `env` overrides the file. All of the project's flows
share its one venv: the dependency step installs under an exclusive lock, and each ingest runs
under a shared one, so two sources load side by side.
"""

from __future__ import annotations

import os
{%- if cookiecutter.dependency_manager == "none" %}
import shlex
import sys
{%- endif %}
{%- if cookiecutter.use_s3 %}
import tempfile
{%- endif %}
from pathlib import Path

from dotenv import dotenv_values
from prefect import Flow, Task, get_run_logger, task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
{%- if cookiecutter.use_s3 %}
from prefect_aws import S3Bucket
{%- endif %}
from prefect_shell import ShellOperation

PROJECT_DIR = Path(__file__).resolve().parent.parent
SETTINGS_FILE = PROJECT_DIR / "prefect" / ".env"
SETTINGS_PREFIX = "{{ cookiecutter.__env_prefix }}"
SINK_SETTING = "{{ cookiecutter.__sink_setting }}"
{%- if cookiecutter.use_s3 %}
BUCKET_BLOCK_SETTING = "{{ cookiecutter.__env_prefix }}_S3_BUCKET_BLOCK"
ARCHIVE_PREFIX_SETTING = "{{ cookiecutter.__env_prefix }}_S3_ARCHIVE_PREFIX"
{%- endif %}
BAD_INPUT_EXIT_CODE = 65  # ingest.py's exit code for a missing, unreadable or malformed source

# One bash script. ShellOperation adds no `set -e`, so the first line makes any failing
# command fail the run.
{%- if cookiecutter.dependency_manager == "pipenv" %}
# prefect/sync-venv.sh installs the Pipfile into the project's one shared venv
# (PIPENV_CUSTOM_VENV_NAME) only when it changed, under a lock, then runs the ingest in it.
INGEST_COMMAND = "prefect/sync-venv.sh pipenv run python ingest.py"
{%- elif cookiecutter.dependency_manager == "uv" %}
# prefect/sync-venv.sh syncs pyproject.toml into the project's one shared environment
# (UV_PROJECT_ENVIRONMENT) only when it changed, under a lock, then runs the ingest in it.
INGEST_COMMAND = "prefect/sync-venv.sh uv run --no-sync python ingest.py"
{%- else %}
# ingest.py runs with the interpreter running this flow (the worker's own venv).
INGEST_COMMAND = f"{shlex.quote(sys.executable)} ingest.py"
{%- endif %}


def source_setting(source: str) -> str:
    """`epic` -> `<PREFIX>_EPIC_SOURCE_FILE` (the naming contract)."""
    return f"{SETTINGS_PREFIX}_{source.upper().replace('-', '_')}_SOURCE_FILE"


def ingest_commands(source: str) -> list[str]:
    return ["set -euo pipefail", f"{INGEST_COMMAND} {source}"]


class BadSourceFile(RuntimeError):
    """ingest.py rejected the source file: retrying would not help."""


def load_settings() -> dict[str, str]:
    """Settings from prefect/.env that the environment does not already set."""
    from_file = dotenv_values(SETTINGS_FILE)
    return {
        name: value
        for name, value in from_file.items()
        if value is not None and name not in os.environ
    }


def setting(settings: dict[str, str], name: str) -> str:
    value = os.environ.get(name) or settings.get(name)
    if not value:
        raise ValueError(f"{name} is not set: add it to prefect/.env or the environment")
    return value


def retry_unless_bad_source(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry a failed ingest unless the source file itself was rejected."""
    try:
        state.result()
    except BadSourceFile:
        return False
    except Exception:  # any other failure may be transient
        return True
    return False


@task(retries=2, retry_delay_seconds=[30, 120], retry_condition_fn=retry_unless_bad_source)
def run_ingest(source: str, path: str, env: dict[str, str]) -> None:
    """Run the dependency step and `ingest.py <source>` on `path` as one fail-fast shell script."""
    env = {**env, source_setting(source): path}
    commands = ingest_commands(source)
    with ShellOperation(commands=commands, env=env, working_dir=PROJECT_DIR) as shell:
        process = shell.trigger()
        try:
            process.wait_for_completion()
        except RuntimeError:
            if process.return_code == BAD_INPUT_EXIT_CODE:
                raise BadSourceFile(f"ingest.py rejected {source_setting(source)}={path}") from None
            raise
{%- if cookiecutter.use_s3 %}


def s3_key(setting: str, source: str, bucket: S3Bucket) -> str:
    """`s3://bucket/key` -> `key`, checking it names the bucket block's bucket."""
    bucket_name, _, key = source.removeprefix("s3://").partition("/")
    parts = key.split("/")
    if bucket_name != bucket.bucket_name or not key or "" in parts or ".." in parts:
        raise ValueError(f"{setting}={source} must be s3://{bucket.bucket_name}/<key>")
    if bucket.bucket_folder:
        raise ValueError(f"the S3Bucket block for {source} must have no bucket_folder")
    return key


@task(retries=2, retry_delay_seconds=30)
def fetch_source(flow_name: str, bucket: S3Bucket, key: str) -> Path:
    """Download the object to a path made of its flow, bucket and key. ingest.py records a
    load under the file's path, so a re-run of the same key replaces its rows."""
    local_copy = Path(tempfile.gettempdir(), flow_name, bucket.bucket_name, key)
    local_copy.parent.mkdir(parents=True, exist_ok=True)
    return bucket.download_object_to_path(key, local_copy)


@task(retries=2, retry_delay_seconds=30)
def archive_source(bucket: S3Bucket, key: str, prefix: str) -> str:
    """Move the loaded object under the archive prefix so it is not loaded again."""
    return bucket.move_object(key, f"{prefix.rstrip('/')}/{key}")
{%- endif %}


def load_source(flow_name: str, source: str) -> None:
    """The body of every source's flow: load the file its setting names into the sink."""
    logger = get_run_logger()
    settings = load_settings()
    setting_name = source_setting(source)
    path = setting(settings, setting_name)
    setting(settings, SINK_SETTING)  # fail before any work when the sink is not set
{%- if cookiecutter.use_s3 %}
    if path.startswith("s3://"):
        bucket = S3Bucket.load(setting(settings, BUCKET_BLOCK_SETTING))
        key = s3_key(setting_name, path, bucket)
        local_copy = fetch_source(flow_name, bucket, key)
        logger.info("Fetched %s to %s", path, local_copy)
        try:
            run_ingest(source, str(local_copy), settings)
        finally:
            local_copy.unlink(missing_ok=True)
        archived = archive_source(bucket, key, setting(settings, ARCHIVE_PREFIX_SETTING))
        logger.info("Archived %s to s3://%s/%s", path, bucket.bucket_name, archived)
        return
{%- endif %}
    logger.info("Loading %s=%s", setting_name, path)
    run_ingest(source, path, settings)


def run_as_script(flow: Flow) -> int:
    """`python prefect/<flow>.py`: run the flow once; exit 0 when it completed."""
    state = flow(return_state=True)
    return 0 if state.is_completed() else 1
