"""`netdebug probe URL`: paced requests, the versions tallied, the split tested, the path fingerprinted.

Pure core, thin edges; each module owns one thing:

- `command`      the subcommand: flags, the run loop around the pieces below, and the API plans use
                 (`probe_config_from_mapping`, `run_probe`)
- `config`       `ProbeConfig`, the one frozen configuration (flag > NETDEBUG_* env > default)
- `weights`      the expected split: `--expect` text, a plan's mapping, `--expect-from` route files
- `client`, `h1` the only network code: httpx for HTTP/2, a small HTTP/1.1 client for the hot path,
                 both also through HTTP proxies (the choice is netdebug/proxy.py's, as curl makes it)
- `resolve`      name resolution bounded by the request timeout, shared per name, out of Ctrl-C's way
- `rate`         the open-model schedule and pacer (clock and sleep injected)
- `runner`       open and closed load models over `probe(index) -> Sample`; knows nothing of HTTP
- `attribution`  which version answered (header, JSON path, regex, pod)
- `fingerprint`  which path an answer took (client sidecar, gateway, waypoint, ztunnel, bypass,
                 local reply)
- `stats`        Wilson intervals, chi-square and the verdict rule
- `samplesize`   "you need about N requests": the answers an on-target split needs to pass 90% of the time
- `report`       the tally, the verdict and exit status, and the text/rich/JSON renderings
- `traffic`      per-answer rows, latency histograms and run parameters for the HTML picture
                 (drawn by netdebug/picture/)
"""
