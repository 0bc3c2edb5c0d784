#!/usr/bin/python3
# A minimal QMP client for the top tests (QEMU's own python package is not
# needed).  Every wait is bounded by $QMP_TIMEOUT seconds (default 3): a
# monitor that does not greet us (another client holds it) fails the
# command instead of hanging the test.
#   qmp-client.py SOCKET CMD...  run each CMD and print its "return" value as
#       one JSON line; CMD is a QMP command name, or "hmp:LINE" for
#       human-monitor-command (whose output must be empty, as it is for
#       qemu-io commands that succeed)
#   qmp-client.py --hold SECONDS SOCKET   connect, negotiate, print "held",
#       keep the monitor for SECONDS
import json
import os
import socket
import sys
import time


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(float(os.environ.get("QMP_TIMEOUT", "3")))
    s.connect(path)
    f = s.makefile("rw", encoding="utf-8", newline="\n")
    greeting = json.loads(f.readline())
    if "QMP" not in greeting:
        sys.exit(f"not a QMP greeting: {greeting}")
    return s, f


def run(f, cmd, args=None):
    msg = {"execute": cmd}
    if args:
        msg["arguments"] = args
    f.write(json.dumps(msg) + "\n")
    f.flush()
    while True:
        reply = json.loads(f.readline())
        if "event" in reply:
            continue
        if "error" in reply:
            sys.exit(f"{cmd}: {reply['error']}")
        return reply["return"]


def main():
    if sys.argv[1] == "--hold":
        s, f = connect(sys.argv[3])
        run(f, "qmp_capabilities")
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
        return
    s, f = connect(sys.argv[1])
    run(f, "qmp_capabilities")
    for cmd in sys.argv[2:]:
        if cmd.startswith("hmp:"):
            out = run(f, "human-monitor-command", {"command-line": cmd[4:]})
            if out:
                sys.exit(f"{cmd[4:]}: {out.strip()}")
        else:
            print(json.dumps(run(f, cmd)))


main()
