#!/bin/bash
# Default command of the netdebug image: a short banner, then an interactive shell. Without a
# terminal (`docker run IMAGE` with no -it) the shell reads end-of-file and exits 0.
cat <<BANNER
netdebug image ($(netdebug --version 2>/dev/null || echo 'netdebug: unavailable'))
  netdebug probe URL --expect v1=75,v2=25   test a traffic split; also: plan, dns, tcp, tls, sidecar
  curl, http (httpie), dig, nc, ip, ss, tcpdump*, openssl, jq, iperf3
  * tcpdump needs NET_RAW/NET_ADMIN: run as root with those capabilities (see docs/images.md)
BANNER
export PS1='netdebug:\w\$ '
exec bash --norc -i "$@"
