"""Host names as Kubernetes DNS and Istio read them: the one place these rules are written. Pure.

- A Service's full name is `<name>.<namespace>.svc.<cluster domain>`; the cluster domain (also the
  SPIFFE trust domain) is `cluster.local`, Istio's and kubeadm's default.
- A name without a dot is a short name: Istio expands it in the namespace of the *rule* that uses it
  (not the Service's), so `echo-service` in a VirtualService in `echo` means
  `echo-service.echo.svc.cluster.local`.
- A routing host may be a wildcard: `*` matches every host, `*.example.com` any subdomain.
"""

from __future__ import annotations

import fnmatch

CLUSTER_DOMAIN = "cluster.local"


def service_host(name: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> str:
    """The full name of Service `name` in `namespace`."""
    return f"{name}.{namespace}.svc.{domain}"


def namespace_domain(namespace: str) -> str:
    """The DNS domain of a namespace, `<namespace>.svc.<cluster domain>` (the last part of an Envoy
    node id in Istio)."""
    return f"{namespace}.svc.{CLUSTER_DOMAIN}"


def is_short_name(host: str) -> bool:
    return "." not in host


def expand_short_name(host: str, namespace: str) -> str:
    """A short name → the Service's full name in `namespace` (the rule's); any other host unchanged."""
    return service_host(host, namespace) if is_short_name(host) else host


def resolve_host(host: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> tuple[str, str] | None:
    """A host → (service name, namespace) if it names a Service by Istio's rules, else None."""
    if is_short_name(host):
        return host, namespace
    suffix = f".svc.{domain}"
    if host.endswith(suffix):
        parts = host[: -len(suffix)].split(".")
        if len(parts) == 2 and all(parts):
            return parts[0], parts[1]
    return None


def names_service(host: str, namespace: str, name: str, service_namespace: str) -> bool:
    """Whether `host`, written in a rule in `namespace`, names Service `name` of `service_namespace`:
    by its full name, or by its short name from the same namespace (`resolve_host` read forwards)."""
    return host == service_host(name, service_namespace) or (host == name and service_namespace == namespace)


def search_path_names(name: str, namespace: str, caller_namespace: str) -> list[str]:
    """Names a caller in `caller_namespace` can use for Service `name` (the pod's DNS search path)."""
    names = [f"{name}.{namespace}", f"{name}.{namespace}.svc", service_host(name, namespace)]
    if caller_namespace == namespace:
        names.insert(0, name)
    return names


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: `*` matches anything, `*.example.com` matches any subdomain."""
    return (
        pattern == "*" or host == pattern or (pattern.startswith("*.") and fnmatch.fnmatchcase(host, pattern))
    )


def more_specific(a: str, b: str) -> str:
    """Of two matching host patterns, the narrower one (the domain a route really serves)."""
    if a == b or not a.startswith("*"):
        return a if not a.startswith("*") or b.startswith("*") else b
    return b if not b.startswith("*") or len(b) > len(a) else a


def caller_host_matches(host: str, pattern: str) -> bool:
    """Istio host matching, as seen from a caller: exact, '*', '*.suffix', or a short name.

    Lenient on purpose (case, a trailing dot): it guesses which route a URL the user typed takes.
    """
    host = host.lower().rstrip(".")
    pattern = pattern.lower().rstrip(".")
    if pattern == "*" or host == pattern:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    # A short name in a VirtualService means <name>.<namespace>.svc.cluster.local; the URL may use
    # either the short or the long form.
    return host.startswith(pattern + ".") or pattern.startswith(host + ".")
