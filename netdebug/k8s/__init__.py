"""The one model of Kubernetes manifests: how they are loaded, what they name, what is wrong with them.

Used by `netdebug mesh up` (inventory → Envoy translation), by the cross-reference checks (and the
warnings `mesh up` prints from them) and by `netdebug probe --expect-from` (YAML loading and host
rules). Pure, except `load.render_kustomize`, which runs `kubectl kustomize`.

- `hosts`      CLUSTER_DOMAIN and every host-name rule (full names, short names, wildcards)
- `documents`  `ManifestError`, `Document` (a document that knows its file, so errors name file,
               kind, name and field), the bare `Doc` and its accessors, the API group names
- `load`       the YAML reader for manifests and its three callers' contracts; kustomize rendering
               with origin annotations
- `inventory`  the typed inventory a cluster would run: Services, Deployments → pods, identities,
               and whether Istio injects each pod's sidecar
- `index`      the look-ups the checks share, and `Finding`
- `checks`     the cross-reference checks (what `istioctl analyze` reports), in a stable order
- `ambient`    the ambient-mode checks (waypoints, injection, VirtualService, ingress, NetworkPolicy)
               and the waypoint look-ups `splits` uses
- `splits`     the split the routes give a request, and plans' expectations checked against it
"""
