"""Start the machine's Redis and PostgreSQL when a test needs them and they are down.

Extra servers (a Redis Cluster, a Redis with AOF) go on other loopback ports; see
:func:`start_redis` which starts one and returns a handle that stops it by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        time.sleep(0.1)
    return False


def ensure_redis() -> str | None:
    """None when Redis answers on 6379 (starting it if needed), else why not."""
    if port_open(6379):
        return None
    if not shutil.which("redis-server"):
        return "redis-server is not installed"
    subprocess.run(REDIS_START, check=False, capture_output=True)
    return None if wait_port(6379) else "Redis did not start on 6379"


def ensure_postgres() -> str | None:
    """None when PostgreSQL answers on 5432 (starting the cluster if needed), else why not."""
    if port_open(5432):
        return None
    etc = Path("/etc/postgresql")
    if not etc.is_dir():
        return "PostgreSQL is not installed"
    version = sorted(os.listdir(etc))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
        check=False,
        capture_output=True,
    )
    return None if wait_port(5432, 30) else "PostgreSQL did not start on 5432"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisProcess:
    """A private redis-server on a loopback port, stopped by pid."""

    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_redis(*extra: str, port: int | None = None) -> RedisProcess:
    """Start ``redis-server`` in the foreground on a free loopback port with ``extra`` options."""
    port = port or free_port()
    directory = Path(tempfile.mkdtemp(prefix=f"redis-{port}-"))
    args = [
        "redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(directory),
        "--save",
        "",
        "--appendonly",
        "no",
        *extra,
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(port):
        process.kill()
        raise RuntimeError(f"redis-server did not start on port {port}")
    return RedisProcess(port, process, directory)


@dataclass
class RedisClusterProcess:
    """A private Redis Cluster of masters on loopback ports, stopped by pid."""

    nodes: list[RedisProcess]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_ok(port: int) -> bool:
    info = subprocess.run(
        ["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True, text=True, check=False
    ).stdout
    return "cluster_state:ok" in info


def start_redis_cluster(masters: int = 3, timeout: float = 30.0) -> RedisClusterProcess:
    """Start ``masters`` cluster-enabled redis-servers and join them (no replicas)."""
    cluster = RedisClusterProcess([])
    try:
        for _ in range(masters):
            # the bus port defaults to port + 10000, which overflows for high ephemeral ports
            cluster.nodes.append(
                start_redis(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-port",
                    str(free_port()),
                )
            )
        addresses = [f"127.0.0.1:{n.port}" for n in cluster.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while not all(_cluster_ok(n.port) for n in cluster.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.2)
    except BaseException:
        cluster.stop()
        raise
    return cluster


# --------------------------------------------------------------------------- crash helpers


def kill_redis(server: RedisProcess) -> None:
    """SIGKILL a private redis-server (no shutdown, no final AOF rewrite); keep its directory."""
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


def restart_redis(server: RedisProcess, *extra: str) -> RedisProcess:
    """SIGKILL ``server`` and start a new redis-server on the same port and directory, so it
    loads whatever the old one left on disk (its AOF, with ``--appendonly yes`` in ``extra``)."""
    kill_redis(server)
    args = [
        "redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        str(server.port),
        "--dir",
        str(server.directory),
        "--save",
        "",
        "--appendonly",
        "no",
        *extra,
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(server.port, 60):  # loading a large AOF takes a moment
        process.kill()
        raise RuntimeError(f"redis-server did not restart on port {server.port}")
    return RedisProcess(server.port, process, server.directory)


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed under /usr/lib/postgresql")
    return str(found[-1])


def _as_postgres(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the ``postgres`` OS user (initdb and the server refuse root)."""
    command = list(args) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class PostgresCluster:
    """A private PostgreSQL cluster in a temporary directory on a loopback port.

    Started and stopped with ``pg_ctl`` on its own data directory, never the machine's server.
    """

    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c shared_buffers=16MB "
            "-c max_connections=50"
        )
        done = _as_postgres(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.directory / "data"),
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
            "-w",
            "-t",
            "90",
            "start",
        )
        if done.returncode != 0 or not wait_port(self.port, 30):
            raise RuntimeError(f"private PostgreSQL did not start: {done.stdout}{done.stderr}")

    def stop(self, mode: str = "fast") -> None:
        """``mode`` ``immediate`` is a crash: no checkpoint, the next start replays the WAL."""
        _as_postgres(_pg_bin("pg_ctl"), "-D", str(self.directory / "data"), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def start_postgres(port: int | None = None) -> PostgresCluster:
    """initdb a private cluster (trust auth, user ``postgres``) and start it."""
    directory = Path(tempfile.mkdtemp(prefix="pg-private-"))
    if os.geteuid() == 0:  # the server runs as postgres and must own its directory
        shutil.chown(directory, "postgres", "postgres")
    cluster = PostgresCluster(port or free_port(), directory)
    done = _as_postgres(
        _pg_bin("initdb"),
        "-D",
        str(directory / "data"),
        "-U",
        "postgres",
        "--auth=trust",
        "--no-sync",
        "-E",
        "UTF8",
    )
    if done.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stderr}")
    try:
        cluster.start()
    except BaseException:
        cluster.remove()
        raise
    return cluster
