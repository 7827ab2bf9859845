"""Prefect flow `{{ cookiecutter.__flow_name }}`: load the {{ cookiecutter.source_name }} export into the warehouse.

The flow runs `ingest.py` in one shell step (prefect-shell's ShellOperation), the way the
team's runbook does, but fail-fast and from the project folder whatever the current directory.
Settings come from `prefect/.env`; variables already in the environment win, so a worker's
environment or a deployment's `env` overrides the file.

Run it locally:
    cd {{ cookiecutter.project_slug }}
    {{ cookiecutter.__source_setting }}=$PWD/data/sample.{{ cookiecutter.source_format }} python prefect/{{ cookiecutter.__flow_name }}.py
"""

from __future__ import annotations

import os
{%- if cookiecutter.dependency_manager == "none" %}
import shlex
{%- endif %}
import sys
{%- if cookiecutter.use_s3 %}
import tempfile
{%- endif %}
from pathlib import Path

from dotenv import dotenv_values
from prefect import Task, flow, get_run_logger, task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
{%- if cookiecutter.use_s3 %}
from prefect_aws import S3Bucket
{%- endif %}
from prefect_shell import ShellOperation

FLOW_NAME = "{{ cookiecutter.__flow_name }}"
PROJECT_DIR = Path(__file__).resolve().parent.parent
SETTINGS_FILE = PROJECT_DIR / "prefect" / ".env"
SOURCE_SETTING = "{{ cookiecutter.__source_setting }}"
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
INGEST_COMMANDS = [
    "set -euo pipefail",
    "prefect/sync-venv.sh pipenv run python ingest.py",
]
{%- elif cookiecutter.dependency_manager == "uv" %}
# prefect/sync-venv.sh syncs pyproject.toml into the project's one shared environment
# (UV_PROJECT_ENVIRONMENT) only when it changed, under a lock, then runs the ingest in it.
INGEST_COMMANDS = [
    "set -euo pipefail",
    "prefect/sync-venv.sh uv run --no-sync python ingest.py",
]
{%- else %}
# ingest.py runs with the interpreter running this flow (the worker's own venv).
INGEST_COMMANDS = [
    "set -euo pipefail",
    f"{shlex.quote(sys.executable)} ingest.py",
]
{%- endif %}


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
def run_ingest(source: str, env: dict[str, str]) -> None:
    """Run the dependency step and ingest.py on `source` as one fail-fast shell script."""
    env = {**env, SOURCE_SETTING: source}
    with ShellOperation(commands=INGEST_COMMANDS, env=env, working_dir=PROJECT_DIR) as shell:
        process = shell.trigger()
        try:
            process.wait_for_completion()
        except RuntimeError:
            if process.return_code == BAD_INPUT_EXIT_CODE:
                raise BadSourceFile(f"ingest.py rejected {SOURCE_SETTING}={source}") from None
            raise
{%- if cookiecutter.use_s3 %}


def s3_key(source: str, bucket: S3Bucket) -> str:
    """`s3://bucket/key` -> `key`, checking it names the bucket block's bucket."""
    bucket_name, _, key = source.removeprefix("s3://").partition("/")
    parts = key.split("/")
    if bucket_name != bucket.bucket_name or not key or "" in parts or ".." in parts:
        raise ValueError(f"{SOURCE_SETTING}={source} must be s3://{bucket.bucket_name}/<key>")
    if bucket.bucket_folder:
        raise ValueError(f"the S3Bucket block for {source} must have no bucket_folder")
    return key


@task(retries=2, retry_delay_seconds=30)
def fetch_source(bucket: S3Bucket, key: str) -> Path:
    """Download the object to a path made of its bucket and key. ingest.py records a load
    under the file's path, so a re-run of the same key replaces its rows."""
    local_copy = Path(tempfile.gettempdir(), FLOW_NAME, bucket.bucket_name, key)
    local_copy.parent.mkdir(parents=True, exist_ok=True)
    return bucket.download_object_to_path(key, local_copy)


@task(retries=2, retry_delay_seconds=30)
def archive_source(bucket: S3Bucket, key: str, prefix: str) -> str:
    """Move the loaded object under the archive prefix so it is not loaded again."""
    return bucket.move_object(key, f"{prefix.rstrip('/')}/{key}")
{%- endif %}


@flow(name=FLOW_NAME, timeout_seconds=3600)
def {{ cookiecutter.__flow_function }}() -> None:
    """Load the file named by {{ cookiecutter.__source_setting }} into {{ cookiecutter.__sink_setting }}."""
    logger = get_run_logger()
    settings = load_settings()
    source = setting(settings, SOURCE_SETTING)
    setting(settings, SINK_SETTING)  # fail before any work when the sink is not set
{%- if cookiecutter.use_s3 %}
    if source.startswith("s3://"):
        bucket = S3Bucket.load(setting(settings, BUCKET_BLOCK_SETTING))
        key = s3_key(source, bucket)
        local_copy = fetch_source(bucket, key)
        logger.info("Fetched %s to %s", source, local_copy)
        try:
            run_ingest(str(local_copy), settings)
        finally:
            local_copy.unlink(missing_ok=True)
        archived = archive_source(bucket, key, setting(settings, ARCHIVE_PREFIX_SETTING))
        logger.info("Archived %s to s3://%s/%s", source, bucket.bucket_name, archived)
        return
{%- endif %}
    logger.info("Loading %s=%s", SOURCE_SETTING, source)
    run_ingest(source, settings)


if __name__ == "__main__":
    state = {{ cookiecutter.__flow_function }}(return_state=True)
    sys.exit(0 if state.is_completed() else 1)
