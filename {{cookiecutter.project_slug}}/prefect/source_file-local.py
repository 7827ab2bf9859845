"""The file a source's setting names, as a flow (prh_ingest.flow) loads it: a local path.

This project reads local files only (it was made without S3 sources).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def local_source_file(
    flow_name: str, setting_name: str, path: str, setting: Callable[[str], str]
) -> Iterator[str]:
    """The file to load: the path itself."""
    yield path
