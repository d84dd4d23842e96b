"""Manifests → Envoy bootstrap configs for the local mesh (pure: plain data in, plain data out).

What gets built, and which Istio behaviour each piece stands in for:

* one **server sidecar** per pod: terminates mTLS with the pod's SPIFFE certificate, requires a
  client certificate signed by the mesh CA, and forwards to the pod's echo process with
  `x-forwarded-client-cert` handled as Istio's inbound listeners do (`APPEND_FORWARD`, subject, URI
  and DNS of the peer), `server: istio-envoy`;
* one **gateway** for every Istio `Gateway` / Gateway API `Gateway` (merged into one listener):
  virtual hosts from the Gateway's hosts and the routes bound to it, upstream mTLS with the
  gateway's identity, `server: istio-envoy`, `use_remote_address` as an edge proxy;
* one **client sidecar** for mesh callers: the outbound routes a sidecar gets (VirtualServices with
  `mesh`, GAMMA HTTPRoutes, and a default route per Service), `server: envoy`. It is also an HTTP
  proxy: Envoy accepts absolute-form request targets, so `http_proxy=` works.

Routing follows Istio's translation (pilot/pkg/networking/core/route): relative weights become
`weighted_clusters`, subsets become label selectors over the pods, route timeouts default to 0 (off),
the default retry policy is Istio's (2 retries on connect-failure/refused-stream/unavailable/
cancelled, and since Istio 1.24 no retriable status code: an upstream 503 is not retried; before
1.24 it was), `x-envoy-attempt-count` is on, and each route gets Istio's decorator operation. Where
Istio releases differ, `versions` says which release to follow (`mesh up --istio-version`).
Pods that Istio would not inject get no server sidecar; callers reach them in plain text, or, when
ztunnel captures them (ambient mode), through the ztunnel stand-in over mTLS.
Anything not emulated produces a warning; anything a cluster would reject raises ManifestError.

Split by input API and by output:

- `translator`    `translate(inventory, placement)`: every Envoy, assembled from the parts below
- `istio`         VirtualService / Istio Gateway → routes and virtual hosts (input)
- `gateway_api`   HTTPRoute / Gateway API Gateway, GAMMA → routes and virtual hosts (input)
- `destinations`  Services and DestinationRules → upstream clusters; the translation's shared state
- `envoy`         Envoy JSON builders: route actions, virtual hosts, clusters, listeners, bootstraps,
                  the server sidecar of a pod (output)
- `ambient`       ambient mode: which Service goes through which waypoint (`ambient_layout`), the
                  ztunnel stand-in (L4 only), the HBONE tunnel into a waypoint
- `waypoint`      the waypoint Envoy (HTTPRoutes on an inbound listener), ingress through it
- `fields`        checked reads of manifest fields, warnings for what is not emulated
- `model`         the result (`MeshConfig`, `EnvoySpec`), the `Placement` of every process, cert paths
- `versions`      the Istio release to follow, and what changed between releases (`CHANGES`)
"""
