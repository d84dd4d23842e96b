"""`netdebug mesh up`: the k8s routed setup run locally on real Envoy — translate the manifests,
issue certificates, start and watch the processes.

- `command`      the subcommand: flags and environment → the frozen `MeshUpConfig`
- `orchestrate`  the process edge: load and place, write configs, start, wait for ready, stop by PID
- `ambient`      the ambient data plane's ports, pods' Downward API marks, state file and printout
- `certs`        a throw-away mesh CA and SPIFFE workload certificates
- `translate/`   manifests → Envoy bootstraps (pure), split by input API and by Envoy output

The manifests are read through the shared model in netdebug/k8s/.
"""
