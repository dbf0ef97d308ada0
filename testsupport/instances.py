"""Private RabbitMQ and PostgreSQL servers that a fault-injection test may stop, crash and restart.

The machine's own services (RabbitMQ on 127.0.0.1:5672, PostgreSQL on 127.0.0.1:5432) are shared
with other tests and engineers, so they are never touched here. Instead each instance runs from a
temporary folder on free ports:

- ``PrivateRabbit``: a RabbitMQ node named ``rabbit-test-XXXX@localhost`` with its own
  ``RABBITMQ_NODE_PORT``, ``RABBITMQ_DIST_PORT``, ``RABBITMQ_MNESIA_BASE``, config files (no
  plugins, so no management listener on 15672) and ``HOME`` (so its own ``.erlang.cookie``). It
  registers with the machine's epmd (4369) under its unique name, which is harmless.
- ``PrivatePostgres``: a cluster made by ``initdb`` (trust auth, listening on 127.0.0.1 only, its
  Unix socket in the temporary folder) run by ``postgres`` from ``/usr/lib/postgresql/*/bin``.
  As root, both run as the ``postgres`` user (PostgreSQL refuses root).

Both are plain child processes of the test process, each in its own process group, so ``stop()``
is a clean shutdown, ``kill()`` a SIGKILL of every server process (a crash), and ``start()`` again
reuses the same data (a restart). ``cleanup()`` always stops everything and removes the folder.
Written for a process monkey-patched by eventlet: only subprocess, time and sockets, no threads.
Folders are ``/tmp/flattr-fault-{rabbit,postgres}-XXXX``; those left by a test process that was
killed outright are swept (servers included) the next time an instance is created.
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

RABBITMQ_SBIN = "/usr/lib/rabbitmq/bin"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"

DIR_PREFIX = "flattr-fault-"  # temporary folders: /tmp/flattr-fault-rabbit-XXXX, /tmp/flattr-fault-postgres-XXXX
OWNER_FILE = "owner.pid"

_live: set[_Instance] = set()


@atexit.register
def _cleanup_leftovers() -> None:  # a safety net when a test process exits without its fixtures' teardown
    for instance in list(_live):
        with contextlib.suppress(Exception):
            instance.cleanup()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans() -> None:
    """Remove the servers and folders of instances whose test process died without cleaning up
    (SIGKILL, or SIGTERM, which skips atexit). Only folders made here whose owner process is gone
    are touched, and only processes whose working directory lies inside such a folder are killed."""
    for folder in glob.glob(os.path.join(os.path.realpath(tempfile.gettempdir()), DIR_PREFIX + "*")):
        try:
            with open(os.path.join(folder, OWNER_FILE)) as fh:
                owner = int(fh.read().strip())
        except (OSError, ValueError):
            continue  # being set up right now, or not ours to judge
        if _pid_alive(owner):
            continue
        for proc_dir in glob.glob("/proc/[0-9]*"):
            try:
                cwd = os.readlink(os.path.join(proc_dir, "cwd"))
            except OSError:
                continue
            if cwd == folder or cwd.startswith(folder + os.sep):
                with contextlib.suppress(OSError):
                    os.kill(int(os.path.basename(proc_dir)), signal.SIGKILL)
        time.sleep(0.2)
        shutil.rmtree(folder, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int, timeout: float = 0.5, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return "(no log)"


class InstanceError(RuntimeError):
    pass


class _Instance:
    """A server run as a child process in its own process group, from a temporary folder."""

    kind = "instance"
    log_path: str

    def __init__(self) -> None:
        sweep_orphans()
        self.base = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{self.kind}-")
        with open(os.path.join(self.base, OWNER_FILE), "w") as fh:
            fh.write(str(os.getpid()))
        self.proc: subprocess.Popen | None = None
        self.start_seconds: list[float] = []  # time of each start() up to ready, for reports
        self._log = None
        _live.add(self)

    # -- to be provided by subclasses
    def _command(self) -> tuple[list[str], dict]:
        raise NotImplementedError

    def _ready_once(self) -> bool:
        raise NotImplementedError

    def _prepare(self) -> None:
        """One-time set-up of the data folder before the first start."""

    # -- life cycle
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0):
        if self.running:
            self.wait_ready(timeout)
            return self
        began = self.launch()
        self.wait_ready(timeout)
        self.start_seconds.append(time.monotonic() - began)
        return self

    def launch(self) -> float:
        """Start the server process without waiting for it to be ready (``wait_ready``), so that
        several can boot at once; the monotonic time it was launched."""
        began = time.monotonic()
        self._prepare()
        argv, popen_kwargs = self._command()
        self._close_log()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: signals reach the server and its children only
            **popen_kwargs,
        )
        return began

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise InstanceError(f"{self.kind} is not running (exit code {code}); log:\n{_tail(self.log_path)}")
            if self._ready_once():
                return
            if time.monotonic() > deadline:
                raise InstanceError(f"{self.kind} not ready after {timeout}s; log:\n{_tail(self.log_path)}")
            time.sleep(0.1)

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def _reap(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _group_gone(self, timeout: float) -> None:
        """Wait until no live (non-zombie) process is left in the instance's process group."""
        pgid = self.proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = False
            for stat in glob.glob("/proc/[0-9]*/stat"):
                try:
                    with open(stat) as fh:
                        fields = fh.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
                    alive = True
                    break
            if not alive:
                return
            self._signal_group(signal.SIGKILL)
            time.sleep(0.05)

    def _graceful_stop(self, timeout: float) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> None:
        """A clean shutdown; falls back to SIGKILL if it takes longer than ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._graceful_stop(timeout)
            if not self._reap(timeout):
                self._signal_group(signal.SIGKILL)
                self._reap(10)
        self._group_gone(10)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL of every server process at once: a crash, no chance to flush or say goodbye."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self._reap(10)
        self._group_gone(10)
        self._close_log()

    def freeze(self) -> None:
        """SIGSTOP every server process: alive, connections open, answering nothing."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_group(signal.SIGCONT)

    def restart(self, kill: bool = False, timeout: float = 60.0):
        """Stop cleanly (or crash, with ``kill=True``) and start again on the same data and ports."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(timeout)

    @contextlib.contextmanager
    def down(self, kill: bool = False, timeout: float = 60.0):
        """``with instance.down(): ...`` — an outage for the duration of the block, then a restart."""
        if kill:
            self.kill()
        else:
            self.stop()
        try:
            yield self
        finally:
            self.start(timeout)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        """Stop whatever runs (SIGKILL if a clean stop fails) and remove the temporary folder."""
        try:
            try:
                self.stop(timeout=15)
            except Exception:
                self.kill()
        finally:
            self._close_log()
            shutil.rmtree(self.base, ignore_errors=True)
            _live.discard(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


class PrivateRabbit(_Instance):
    """A RabbitMQ node of its own, e.g. ``rabbit-test-1a2b3c4d@localhost`` on a free port."""

    kind = "rabbit"
    host = "127.0.0.1"  # the address it listens on (AMQP and Erlang distribution)

    def __init__(self) -> None:
        super().__init__()
        self.nodename = f"rabbit-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        while self.dist_port == self.port:
            self.dist_port = free_port()
        self.log_path = os.path.join(self.base, "server.log")
        self.home = self.base  # HOME: the node's and rabbitmqctl's .erlang.cookie are the same file
        # its own config file, so nothing of /etc/rabbitmq (listener on 5672, plugins) applies
        with open(os.path.join(self.base, "rabbitmq.conf"), "w") as fh:
            fh.write(f"listeners.tcp.1 = 127.0.0.1:{self.port}\nlog.console = false\nlog.file.level = info\n")
        with open(os.path.join(self.base, "enabled_plugins"), "w") as fh:
            fh.write("[].\n")  # no management plugin: nothing on 15672
        open(os.path.join(self.base, "rabbitmq-env.conf"), "w").close()  # not /etc/rabbitmq/rabbitmq-env.conf

    @property
    def amqp_uri(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/"

    def env(self) -> dict:
        base = self.base
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RABBITMQ_", "ERL_")) and key not in ("HOME", "NODENAME", "NOTIFY_SOCKET")
        }
        env.update(
            HOME=self.home,
            LANG=env.get("LANG", "C.UTF-8"),
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS=self.host,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=os.path.join(base, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(base, "log"),
            RABBITMQ_PID_FILE=os.path.join(base, "rabbit.pid"),
            RABBITMQ_CONFIG_FILE=os.path.join(base, "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=os.path.join(base, "advanced.config"),  # absent
            RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(base, "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=os.path.join(base, "rabbitmq-env.conf"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=f"-kernel inet_dist_use_interface {{{self.host.replace('.', ',')}}}",
            ERL_EPMD_ADDRESS="127.0.0.1",  # only used if no epmd runs yet and the node starts one
        )
        return env

    def _command(self):
        return [os.path.join(RABBITMQ_SBIN, "rabbitmq-server")], {"env": self.env(), "cwd": self.base}

    def _ready_once(self) -> bool:
        if not _port_open(self.port, host=self.host):
            return False
        import amqp

        conn = amqp.Connection(f"{self.host}:{self.port}", userid="guest", password="guest", connect_timeout=2)
        try:
            conn.connect()
            conn.channel().close()
        except Exception:
            with contextlib.suppress(Exception):
                conn.collect()
            return False
        with contextlib.suppress(Exception):
            conn.close()
        return True

    def _ctl_argv(self, tool: str, *args: str) -> list[str]:
        return [os.path.join(RABBITMQ_SBIN, tool), "-n", self.nodename, *args]

    def _graceful_stop(self, timeout: float) -> None:
        # The rabbitmq-server script traps SIGTERM and forwards it to the Erlang VM, which shuts the
        # broker down cleanly (queues and message stores closed) before exiting.
        self.proc.send_signal(signal.SIGTERM)

    def ctl(self, *args: str, tool: str = "rabbitmqctl", timeout: float = 60) -> str:
        """Run ``rabbitmqctl -n NODE ARGS`` (or ``tool="rabbitmq-diagnostics"``) against this node only."""
        result = subprocess.run(
            self._ctl_argv(tool, *args),
            env=self.env(),
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise InstanceError(f"{tool} {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result.stdout


def _pg_bin() -> str:
    dirs = sorted(glob.glob(PG_BIN_GLOB), key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/")[-2].split(".")])
    if not dirs:
        raise InstanceError(f"no PostgreSQL server found in {PG_BIN_GLOB}")
    return dirs[-1]


class PrivatePostgres(_Instance):
    """A PostgreSQL cluster of its own on a free port, user ``postgres`` with trust auth."""

    kind = "postgres"

    def __init__(self) -> None:
        super().__init__()
        self.bin = _pg_bin()
        self.port = free_port()
        self.datadir = os.path.join(self.base, "data")
        self.log_path = os.path.join(self.base, "server.log")
        self._initialised = False
        self._as_user: dict = {}
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root; the folder must belong to their user
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            self._as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        """libpq form, for psycopg2.connect."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a fresh name unless given) and return its SQLAlchemy URL."""
        import psycopg2

        name = name or f"fault_{uuid.uuid4().hex[:12]}"
        conn = psycopg2.connect(self.dsn, connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url_for(name)

    def _prepare(self) -> None:
        if self._initialised:
            return
        result = subprocess.run(
            [
                os.path.join(self.bin, "initdb"),
                "-D", self.datadir,
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # nothing to lose: the folder is thrown away if initdb is interrupted
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.base,
            env=self._env(),
            **self._as_user,
        )
        if result.returncode != 0:
            raise InstanceError(f"initdb failed: {result.stdout}{result.stderr}")
        self._initialised = True

    def _env(self) -> dict:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _command(self):
        argv = [
            os.path.join(self.bin, "postgres"),
            "-D", self.datadir,
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.base}",
            "-c", "max_connections=200",
            "-c", "shared_buffers=32MB",
            # fsync off is safe for this purpose: a SIGKILL'd server loses no OS page cache, so the
            # crash recovery a test provokes with kill() is the real one; only a machine crash
            # would need fsync.
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
            "-c", "logging_collector=off",
        ]
        return argv, {"env": self._env(), "cwd": self.base, **self._as_user}

    def _ready_once(self) -> bool:
        import psycopg2

        try:
            conn = psycopg2.connect(self.dsn, connect_timeout=2)
        except psycopg2.OperationalError:  # refused, or "the database system is starting up"
            return False
        conn.close()
        return True

    def _graceful_stop(self, timeout: float) -> None:
        # SIGINT to the postmaster = "fast" shutdown: roll back open transactions, checkpoint, exit
        self.proc.send_signal(signal.SIGINT)
