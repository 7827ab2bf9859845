"""Every scheduled ingest flow of the {{ cookiecutter.warehouse_name }}, as code.

The flows are in prefect/flows.json, this team's file: edit it by hand or with --add and
--remove. Every command that reads it checks it first (offline, --dry-run too).

    python prefect/prw_deploy.py --dry-run       # describe flows.json; needs no server
    python prefect/prw_deploy.py --plan          # what a deploy would change (exit 2: changes)
    python prefect/prw_deploy.py                 # create or update what changed
    python prefect/prw_deploy.py --prune         # ...and delete this warehouse's unlisted ones
    python prefect/prw_deploy.py --resume NAME   # unpause (a deploy never does; --pause NAME)
    python prefect/prw_deploy.py --add '<entry>' # add or replace a flow (--remove NAME)
    python prefect/prw_deploy.py --status        # each watched source: fresh? (exit 2: not all)

The deploy tool itself is the prh-ingest package (requirements-worker.txt pins it).
"""

import sys
from pathlib import Path

from prh_ingest.deploy import Warehouse, main

WAREHOUSE = Warehouse(
    slug={{ cookiecutter.warehouse_slug | tojson }},
    work_pool={{ cookiecutter.work_pool | tojson }},
    timezone={{ cookiecutter.timezone | tojson }},  # of an entry that names none
    flows_file=Path(__file__).with_name("flows.json"),
)

if __name__ == "__main__":
    sys.exit(main(WAREHOUSE))
