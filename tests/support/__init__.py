"""Test helpers, one module per kind of thing: `commands` (this repo's tools as subprocesses),
`git` (repos, commits, bare remotes), `processes` (start, stop, prove nothing is left), `services`
(Prefect server, S3, PostgreSQL, and their session fixtures), `postgresql` (where PostgreSQL's
programs are), `baking` (ingest projects through pytest-cookies),
`warehouse` (warehouse bakes and flow entries), `regeneration` (a template repo and cruft), `site`
(the e2e site model), `flow_runs` (the Prefect API), `systemd` (unit files), `booted` and
`booted_worker` (a booted systemd), `runbook` (hand-made projects for adoption)."""
