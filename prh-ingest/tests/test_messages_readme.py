"""The generated README's queries over HL7 and FHIR tables run as written on PostgreSQL and
find what they say: the patients admitted yesterday, the observations of one code."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from loading import TABLE, Sink, ingest, postgres_sink
from postgres import PostgresServer
from test_formats_fhir import OBSERVATIONS, ndjson
from test_formats_hl7 import message_text

README = Path(__file__).parents[2] / "{{cookiecutter.project_slug}}" / "README.md"


def readme_queries() -> list[str]:
    shape = README.read_text().split("## Your export's shape", 1)[1].split("\n## ", 1)[0]
    return [
        sql.replace("{{ cookiecutter | table_name }}", TABLE)
        for sql in re.findall(r"```sql\n(.*?)```", shape, re.S)
    ]


def admission(control_id: str, mrn: str, admitted: str) -> str:
    msh = ["|", "^~\\&", "ADT1", "GHH", "", "", admitted, "", "ADT^A01", control_id, "P", "2.5"]
    pv1 = ["1", "I", "ICU^101^A", *[""] * 40, admitted]  # PV1-44: the admit time
    return message_text([("MSH", msh), ("PID", ["1", "", f"{mrn}^^^GHH^MR", "", "DOE^J"]),
                         ("PV1", pv1)], "\r")  # fmt: skip


@pytest.fixture
def warehouse(postgres_server: PostgresServer) -> Sink:
    return postgres_sink(postgres_server)


def test_the_readme_queries_find_what_they_say(warehouse: Sink, tmp_path: Path) -> None:
    queries = readme_queries()
    (admissions,) = [sql for sql in queries if f"{TABLE}_pid" in sql]
    (observations,) = [sql for sql in queries if f"{TABLE}_observation" in sql]
    yesterday = dt.date.today() - dt.timedelta(days=1)
    earlier = yesterday - dt.timedelta(days=3)
    hl7_file = tmp_path / "adt.hl7"
    hl7_file.write_text(
        admission("C1", "M1", f"{yesterday:%Y%m%d}0815")
        + admission("C2", "M2", f"{earlier:%Y%m%d}0900")
    )
    assert ingest(hl7_file, warehouse).returncode == 0
    assert [row[0] for row in warehouse.query(admissions)] == ["M1^^^GHH^MR"]

    other = {
        **OBSERVATIONS[0],
        "id": "bp",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
    }
    fhir_file = tmp_path / "Observation.000.ndjson"
    fhir_file.write_bytes(ndjson([*OBSERVATIONS, other]))
    assert ingest(fhir_file, warehouse).returncode == 0
    found = sorted(row[0] for row in warehouse.query(observations))
    assert found == sorted(resource["id"] for resource in OBSERVATIONS)
