"""Shared fixtures. pytest puts tests/ on sys.path, so helpers import as `support.*`."""

from support.postgres import postgres_server  # noqa: F401 (fixture)
from support.services import prefect_server, processes, s3_server  # noqa: F401 (fixtures)
