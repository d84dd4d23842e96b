"""Run a command beside a DNS server that never answers (for test_probe_dns.py).

Meant to run inside a fresh network and mount namespace whose /etc/resolv.conf says
`nameserver 127.0.0.1`: it binds UDP 127.0.0.1:53 there, starts the command, prints `pid N`, then
`dns-query` when the first query arrives (the command is then inside a look-up that will never be
answered), then `exit CODE` when the command ends. The command's output goes to the file named by
the first argument.

    python dns_blackhole.py OUTPUT_FILE COMMAND...
"""

from __future__ import annotations

import select
import socket
import subprocess
import sys


def main(argv: list[str]) -> int:
    output, command = argv[0], argv[1:]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 53))
        with open(output, "wb") as out:
            child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        print(f"pid {child.pid}", flush=True)
        seen = False
        while child.poll() is None:
            readable, _, _ = select.select([server], [], [], 0.05)
            if readable:
                server.recv(4096)  # read and drop: no answer, ever
                if not seen:
                    print("dns-query", flush=True)
                    seen = True
        print(f"exit {child.returncode}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
