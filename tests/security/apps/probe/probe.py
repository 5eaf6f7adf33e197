"""A hostile app's look at its sandbox: who it runs as, what /proc and its mounts tell, what
it may write. Prints one line: PROBE <json>. The security tests read it."""

import errno
import json
import os

import marker

# Every /proc path the sandbox masks (targets/sandbox/config.py MASKED_PATHS), given by the
# test so that the probe and the config cannot drift apart silently.
MASKED = [p for p in os.environ.get("PROBE_MASKED", "").split(":") if p]
WRITE = os.environ.get("PROBE_WRITE") == "1"


def read(path, limit=4096):
    """(content, errno name): what reading path gives (a folder: its names)."""
    try:
        if os.path.isdir(path):
            return ",".join(sorted(os.listdir(path))), ""
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace"), ""
    except OSError as e:
        return "", errno.errorcode.get(e.errno or 0, str(e.errno))


def attempt(func):
    try:
        func()
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e.errno))
    return "ok"


def write_tmp():
    with open("/tmp/probe", "w") as f:
        f.write("x")


def write_root_owned():
    # /etc/summon/app.json: a file of the image, owned by root (unmapped: it shows as nobody).
    with open("/etc/summon/app.json", "a") as f:
        f.write("x")


def create_in_root():
    with open("/probe-was-here", "w") as f:
        f.write("x")


status = {}
for line in open("/proc/self/status"):
    key, _, value = line.partition(":")
    status[key] = value.strip()
report = {
    "marker": marker.VALUE,
    "uid": os.getuid(),
    "euid": os.geteuid(),
    "gid": os.getgid(),
    "uid_map": read("/proc/self/uid_map")[0].split(),
    "gid_map": read("/proc/self/gid_map")[0].split(),
    "caps": {k: status.get(k) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
    # Only where asked: on the unix target these paths are the host's own.
    "write_tmp": attempt(write_tmp) if WRITE else "",
    "write_root_owned": attempt(write_root_owned) if WRITE else "",
    "create_in_root": attempt(create_in_root) if WRITE else "",
    "mountinfo": read("/proc/self/mountinfo", 1 << 20)[0],
    "masked": {path: read(path) for path in MASKED},
}
print("PROBE " + json.dumps(report), flush=True)
