"""Run the k8s routed setup locally on real Envoy: translate manifests, issue certs, start processes."""
