"""No patient value in any message: malformed rows carrying a canary identifier are refused
on both databases, and the canary appears nowhere in the loader's output (PostgreSQL's COPY
errors carry the offending line in their CONTEXT: it must never be printed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from loading import BAD_INPUT, QUOTE_SETTING, Sink, ingest

CANARY = "MRN-CANARY-4711"
GOOD = b"".join(b"%05d,Patient %d,ok\r\n" % (n, n) for n in range(200))
HEADER = b"mrn,name,note\r\n"
# Each malformed file: (its bytes, the settings it is loaded with).
MALFORMED = {
    "extra-value": (HEADER + GOOD + b"00999,Jo," + CANARY.encode() + b",extra\r\n", {}),
    "unterminated-quote": (HEADER + GOOD + b'00999,"' + CANARY.encode() + b" says hi\r\n", {}),
    "undecodable-byte": (HEADER + GOOD + b"00999,Zo\xeb " + CANARY.encode() + b",x\r\n", {}),
    "value-outside-the-header": (
        b","
        + HEADER
        + b"".join(b"," + line for line in GOOD.splitlines(keepends=True))
        + CANARY.encode()
        + b",00999,Jo,x\r\n",
        {},
    ),
    "unquoted-caret-extra-value": (
        HEADER.replace(b",", b"^")
        + GOOD.replace(b",", b"^")
        + b'00999^5" '
        + CANARY.encode()
        + b"^x^y\r\n",
        {QUOTE_SETTING: "none"},
    ),
    "short-row": (HEADER + GOOD + CANARY.encode() + b"\r\n", {}),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_row_never_shows_its_values(sink: Sink, tmp_path: Path, case: str) -> None:
    content, settings = MALFORMED[case]
    source = tmp_path / "export.csv"
    source.write_bytes(content)
    result = ingest(source, sink, **settings)
    output = result.stdout + result.stderr
    assert result.returncode == BAD_INPUT, output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.search(r"(row |line |cell A)202\b", result.stderr), result.stderr  # names where
    assert CANARY not in output
    assert "CANARY" not in output  # not a part of it either
    assert sink.query("SELECT 1") and not table_exists_with_rows(sink)


def table_exists_with_rows(sink: Sink) -> bool:
    try:
        return bool(sink.rows())
    except Exception:  # noqa: BLE001 (no table: nothing was written)
        return False
