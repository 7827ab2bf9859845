"""The file a source's setting names, as a flow (prh_ingest.flow) loads it: a local path, or
`s3://<bucket>/<key>`, fetched with the prefect-aws S3Bucket block prefect/.env names and
moved under the archive prefix once it is loaded, so it is not loaded again.

Create the blocks once on the server (the keys stay in the AwsCredentials block, never in
prefect/.env):

    from prefect_aws import AwsCredentials, S3Bucket
    credentials = AwsCredentials(aws_access_key_id="...", aws_secret_access_key="...")
    credentials.save("{{ cookiecutter.project_slug }}-aws")
    bucket = S3Bucket(bucket_name="prh-landing", credentials=credentials)
    bucket.save("{{ cookiecutter.project_slug }}-landing")
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import get_run_logger, task
from prefect_aws import S3Bucket

BUCKET_BLOCK_SETTING = "{{ cookiecutter | env_prefix }}_S3_BUCKET_BLOCK"
ARCHIVE_PREFIX_SETTING = "{{ cookiecutter | env_prefix }}_S3_ARCHIVE_PREFIX"


def s3_key(setting_name: str, source: str, bucket: S3Bucket) -> str:
    """`s3://bucket/key` -> `key`, checking it names the bucket block's bucket."""
    bucket_name, _, key = source.removeprefix("s3://").partition("/")
    parts = key.split("/")
    if bucket_name != bucket.bucket_name or not key or "" in parts or ".." in parts:
        raise ValueError(f"{setting_name}={source} must be s3://{bucket.bucket_name}/<key>")
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


@contextmanager
def local_source_file(
    flow_name: str, setting_name: str, path: str, setting: Callable[[str], str]
) -> Iterator[str]:
    """The file to load: a local path itself; an `s3://` object downloaded, removed after the
    load, and archived when the load succeeded."""
    if not path.startswith("s3://"):
        yield path
        return
    logger = get_run_logger()
    bucket = S3Bucket.load(setting(BUCKET_BLOCK_SETTING))
    key = s3_key(setting_name, path, bucket)
    local_copy = fetch_source(flow_name, bucket, key)
    logger.info("Fetched %s to %s", path, local_copy)
    try:
        yield str(local_copy)
    finally:
        local_copy.unlink(missing_ok=True)
    archived = archive_source(bucket, key, setting(ARCHIVE_PREFIX_SETTING))
    logger.info("Archived %s to s3://%s/%s", path, bucket.bucket_name, archived)
