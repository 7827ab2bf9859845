"""prh-ingest: the loader, the naming contract and the deploy tool that the projects generated
by prh-ingest-template run on. A project pins one version; see CHANGELOG.md."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("prh-ingest")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+source"
