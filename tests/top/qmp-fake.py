#!/usr/bin/python3
# A fake QMP monitor for the top tests: what a real QEMU could send but the
# test cannot make it send on cue.  Each message is pretty-printed over
# several lines and written in two parts with a pause between them, every
# reply comes after an event and after a reply to another id (the request's
# id as a string; top sends numbers), and the command named by FAIL (if
# any) gets an error reply.  One drive "fake0"
# (a qcow2 over a backing file) and an empty CD-ROM drive.
#   qmp-fake.py SOCKET [FAIL]   prints "ready" once it listens
import json
import socket
import sys
import time

image = {"filename": "/fake/top.qcow2", "format": "qcow2", "virtual-size": 1 << 30,
         "backing-image": {"filename": "/fake/base.raw", "format": "raw",
                           "virtual-size": 1 << 30}}
stats = {"rd_operations": 3, "rd_bytes": 12288, "wr_operations": 2, "wr_bytes": 1 << 20,
         "flush_operations": 1, "unmap_operations": 4, "unmap_bytes": 65536,
         "failed_rd_operations": 1, "invalid_rd_operations": 1, "failed_wr_operations": 0,
         "rd_total_time_ns": 3000, "wr_total_time_ns": 5000, "flush_total_time_ns": 700,
         "unmap_total_time_ns": 11, "timed_stats": []}
results = {
    "qmp_capabilities": {},
    "query-name": {"name": "fakevm"},
    "query-block": [
        {"device": "fake0", "qdev": "/machine/peripheral-anon/device[0]/virtio-backend",
         "locked": False, "removable": False, "type": "unknown",
         "inserted": {"file": "/fake/top.qcow2", "drv": "qcow2", "ro": True,
                      "backing_file_depth": 1, "image": image}},
        {"device": "", "qdev": "cd0", "locked": False, "removable": True, "type": "unknown"},
    ],
    "query-blockstats": [
        {"device": "fake0", "qdev": "/machine/peripheral-anon/device[0]/virtio-backend",
         "node-name": "#block123", "stats": stats},
        {"device": "", "qdev": "cd0", "stats": dict(stats, rd_operations=99)},
    ],
}
fail = sys.argv[2] if len(sys.argv) > 2 else None

srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(1)
print("ready", flush=True)
while True:
    c, _ = srv.accept()

    def send(obj):
        data = json.dumps(obj, indent=2).encode() + b"\r\n"
        c.sendall(data[:len(data) // 2])
        time.sleep(0.01)
        c.sendall(data[len(data) // 2:])

    try:
        send({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}},
                      "capabilities": ["oob"]}})
        for line in c.makefile("rb"):
            req = json.loads(line)
            cmd, rid = req["execute"], req.get("id")
            send({"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}})
            send({"return": {}, "id": str(rid)})
            if cmd == fail or cmd not in results:
                send({"error": {"class": "GenericError", "desc": f"{cmd} refused"}, "id": rid})
            else:
                send({"return": results[cmd], "id": rid})
    except (BrokenPipeError, ConnectionResetError):
        pass
    c.close()
