"""Print N distinct free loopback ports below the kernel's ephemeral range.

    python3 deploy/ports.py N

A port the kernel hands out (bind to 0) and that is then closed can be
given to any outgoing connection before the daemon meant for it binds it.
All N are held until all are chosen, so none is given twice.
"""
import random
import socket
import sys

lo = int(open('/proc/sys/net/ipv4/ip_local_port_range').read().split()[0])
held = []
while len(held) < int(sys.argv[1]):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randrange(10000, lo)))
    except OSError:
        s.close()
        continue
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
