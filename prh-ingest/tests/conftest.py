"""The engine's shared fixtures, each from its own module (one import line per module)."""

from databases import database  # noqa: F401 (fixture)
from pg import pg_conninfo, pg_server  # noqa: F401 (fixtures)
