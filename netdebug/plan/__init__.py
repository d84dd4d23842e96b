"""`netdebug plan FILE.yaml`: a YAML plan of named checks (probe, http, dns, tcp, tls), run in order
with repeats, reported as text, JSON and JUnit; the sidecar is waited for first and quit at the end.

- `model`    the frozen `Plan`, its steps and specs, and what an http step's expectation means
- `parse`    YAML text (+ `--var`, NETDEBUG_VAR_*) -> `Plan`; every error names file, step and field
- `execute`  the executor (steps, repeats, severity) and the production step runner
- `report`   the text lines, the live view and the JSON document of a run
- `junit`    the JUnit XML report
- `command`  the subcommand: flags, config, the sidecar lifecycle around the run
"""
