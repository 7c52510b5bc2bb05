#!/usr/bin/env python3
"""tests/unit_start.py - start slmd from its installed systemd units inside a root, as systemd
would, where systemd is not PID 1 (a build machine, a container, CI).

Used by tests/test_deb.sh after `dpkg --root=ROOT -i` of the packages (ROOT an overlay of / in a
private mount namespace, so the machine itself is not changed). What it does, from the units'
own lines (nothing about slmd is assumed here but the unit names):
  - slmd.socket: ListenSequentialPacket=, SocketMode=, DirectoryMode=: creates the listening
    socket and passes it as fd 3 (LISTEN_FDS=1, LISTEN_PID, LISTEN_FDNAMES);
  - slmd.service: ExecStart=, Environment=, DynamicUser= (a uid with no passwd entry, as
    systemd's dynamic users have), RuntimeDirectory=/-Mode=, StateDirectory=, CacheDirectory=,
    Type=notify (NOTIFY_SOCKET; waits for READY=1 within TimeoutStartSec=), WatchdogSec=
    (WATCHDOG_USEC; a WATCHDOG=1 must arrive within it), ExecReload= (SIGHUP: RELOADING=1 then
    READY=1), stop (SIGTERM: STOPPING=1, then exit status 0 within TimeoutStopSec=).
  - Between start and stop it runs the client command given after `--` (chrooted, as an
    unprivileged uid) and prints its output.
The sandboxing lines (ProtectSystem=, SystemCallFilter=, ...) are not applied: they need
systemd itself; `systemd-analyze verify` checks them (tests/test_systemd.c).
Prints `ok ...` / `FAIL ...` lines; exits 1 on any failure.
usage: unit_start.py ROOT [--client-uid N] [--client-out FILE] -- CLIENT ARGV...
(FILE: where the client's standard output is written)
"""
import os
import signal
import socket
import subprocess
import sys
import time

DYNAMIC_UID = 61184   # the first uid of systemd's dynamic range (61184-65519)
failed = False


def ok(msg):
    print("ok   " + msg, flush=True)


def bad(msg):
    global failed
    failed = True
    print("FAIL " + msg, flush=True)


def parse_unit(path):
    """Returns {section: [(key, value), ...]}: keys repeat in units (Environment=, DeviceAllow=)."""
    out, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                out.setdefault(section, [])
            elif "=" in line and section:
                k, v = line.split("=", 1)
                out[section].append((k.strip(), v.strip()))
    return out


def get(unit, section, key, default=None):
    vals = [v for k, v in unit.get(section, []) if k == key]
    return vals[-1] if vals else default


def all_of(unit, section, key):
    return [v for k, v in unit.get(section, []) if k == key]


def seconds(text, default):
    if text is None:
        return default
    text = text.strip()
    for suffix, mul in (("min", 60), ("ms", 0.001), ("s", 1)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * mul
    return float(text)


def environment_lines(values):
    env = {}
    for v in values:   # Environment=A=1 B=2 (no quoting in our units; refuse what we do not parse)
        for item in v.split():
            if "=" not in item or item[0] in "\"'":
                raise SystemExit("unit_start.py: cannot parse Environment=" + v)
            k, val = item.split("=", 1)
            env[k] = val
    return env


def main():
    args = sys.argv[1:]
    if "--" not in args or not args:
        raise SystemExit(__doc__)
    split = args.index("--")
    head, client = args[:split], args[split + 1:]
    root = head[0]
    client_uid, client_out = 65534, None
    if "--client-uid" in head:
        client_uid = int(head[head.index("--client-uid") + 1])
    if "--client-out" in head:
        client_out = head[head.index("--client-out") + 1]
    units = os.path.join(root, "usr/lib/systemd/system")
    sock_unit = parse_unit(os.path.join(units, "slmd.socket"))
    svc = parse_unit(os.path.join(units, "slmd.service"))
    r = lambda p: os.path.join(root, p.lstrip("/"))

    # --- the socket unit
    path = get(sock_unit, "Socket", "ListenSequentialPacket")
    if not path:
        bad("slmd.socket has no ListenSequentialPacket=")
        return 1
    os.makedirs(os.path.dirname(r(path)), mode=int(get(sock_unit, "Socket", "DirectoryMode", "0755"), 8),
                exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(r(path))
    os.chmod(r(path), int(get(sock_unit, "Socket", "SocketMode", "0666"), 8))
    listener.listen(64)
    ok(f"slmd.socket: listening on {path} (mode {get(sock_unit, 'Socket', 'SocketMode')})")

    # --- the service unit
    dynamic = get(svc, "Service", "DynamicUser", "no") in ("yes", "true", "1")
    uid = gid = DYNAMIC_UID if dynamic else 0
    if not dynamic and get(svc, "Service", "User"):
        bad("slmd.service names a static User= without DynamicUser=; this runner only does dynamic users")
        return 1
    for key, base in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib"), ("CacheDirectory", "/var/cache")):
        for name in all_of(svc, "Service", key):
            d = r(os.path.join(base, name))
            os.makedirs(d, exist_ok=True)
            os.chown(d, uid, gid)
            if key == "RuntimeDirectory":
                os.chmod(d, int(get(svc, "Service", "RuntimeDirectoryMode", "0755"), 8))
    notify_path = "/run/systemd/notify"
    os.makedirs(os.path.dirname(r(notify_path)), exist_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(r(notify_path))
    os.chmod(r(notify_path), 0o777)
    watchdog = seconds(get(svc, "Service", "WatchdogSec"), 0)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "NOTIFY_SOCKET": notify_path, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "slmd.socket"}
    if watchdog:
        env["WATCHDOG_USEC"] = str(int(watchdog * 1e6))
    env.update(environment_lines(all_of(svc, "Service", "Environment")))
    argv = get(svc, "Service", "ExecStart").split()
    lfd = listener.fileno()

    def child():
        os.dup2(lfd, 3)
        os.set_inheritable(3, True)   # dup2 onto itself (lfd already 3) keeps close-on-exec
        os.chroot(root)
        os.chdir("/")
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        env["LISTEN_PID"] = str(os.getpid())
        env["WATCHDOG_PID"] = str(os.getpid())
        os.execve(argv[0], argv, env)

    pid = os.fork()
    if pid == 0:
        try:
            child()
        finally:
            os._exit(127)
    try:
        return service(svc, pid, notify, watchdog, root, client, client_uid, client_out, argv, env, uid)
    finally:
        try:   # never leave it running: a failed check returns early
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def service(svc, pid, notify, watchdog, root, client, client_uid, client_out, argv, env, uid):
    """Start (READY=1), watchdog, one client, reload, stop: each checked against the unit."""
    ok(f"slmd.service: ExecStart={' '.join(argv)} as uid {uid} (dynamic user, no passwd entry)"
       f" with {' '.join(k + '=' + v for k, v in env.items() if k.startswith('SLM'))}")

    def wait_for(states, limit, what):
        """Reads notify messages until every state of `states` was seen; returns the messages."""
        seen, msgs, until = set(), [], time.monotonic() + limit
        while not states <= seen:
            left = until - time.monotonic()
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                bad(f"{what}: slmd exited ({status:#x}) before {' '.join(sorted(states - seen))}")
                return None
            if left <= 0:
                bad(f"{what}: no {' '.join(sorted(states - seen))} within {limit:g} s")
                return None
            notify.settimeout(min(left, 0.5))
            try:
                data = notify.recv(4096).decode(errors="replace")
            except socket.timeout:
                continue
            for line in data.split("\n"):
                if line:
                    msgs.append(line)
                    seen.add(line)
        return msgs

    start_limit = seconds(get(svc, "Service", "TimeoutStartSec"), 90)
    msgs = wait_for({"READY=1"}, start_limit, "start (Type=notify)")
    if msgs is None:
        return 1
    status = "; ".join(m[7:] for m in msgs if m.startswith("STATUS="))
    ok(f"READY=1 within TimeoutStartSec={start_limit:g}" + (f"; STATUS: {status}" if status else ""))
    if watchdog:
        if wait_for({"WATCHDOG=1"}, watchdog, "WatchdogSec") is not None:
            ok(f"WATCHDOG=1 within WatchdogSec={watchdog:g}")

    # --- a client: chrooted, as another unprivileged uid (the socket's mode lets it in)
    try:
        res = subprocess.run(["chroot", f"--userspec={client_uid}:{client_uid}", root] + client,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    except subprocess.TimeoutExpired:
        bad(f"client {' '.join(client)}: no answer within 120 s")
        return 1
    if client_out:
        with open(client_out, "wb") as f:
            f.write(res.stdout)
    if res.returncode == 0 and res.stdout.strip():
        ok(f"client {' '.join(client)}: exit 0")
    else:
        bad(f"client {' '.join(client)}: exit {res.returncode}: {res.stderr.decode(errors='replace').strip()}")

    # --- reload and stop as systemd does
    if get(svc, "Service", "ExecReload", "").startswith("/bin/kill -HUP"):
        os.kill(pid, signal.SIGHUP)
        if wait_for({"RELOADING=1", "READY=1"}, start_limit, "reload (ExecReload=)") is not None:
            ok("ExecReload (SIGHUP): RELOADING=1, then READY=1")
    os.kill(pid, signal.SIGTERM)
    stop_limit = seconds(get(svc, "Service", "TimeoutStopSec"), 90)
    until, status = time.monotonic() + stop_limit, None
    stopping = False
    while time.monotonic() < until:
        notify.settimeout(0.2)
        try:
            stopping |= "STOPPING=1" in notify.recv(4096).decode(errors="replace").split("\n")
        except socket.timeout:
            pass
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
    if status is None:
        bad(f"stop: slmd still running {stop_limit:g} s (TimeoutStopSec) after SIGTERM")
    elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        ok(f"stop (SIGTERM): exit status 0{', STOPPING=1 sent' if stopping else ''}")
        if not stopping:
            bad("stop: no STOPPING=1")
    else:
        bad(f"stop: wait status {status:#x}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
