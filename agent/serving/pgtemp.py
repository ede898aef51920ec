"""A throw-away PostgreSQL server for tests, benchmarks and local trials of the PostgreSQL session store.

    with temporary_postgres() as pg:         # pg.url: postgresql://lumenrec@127.0.0.1:PORT/postgres
        store = PostgresSessionStore(pg.url)
        pg.stop(); pg.start()                # a database outage, for fault tests

Uses the cluster tools of the system's PostgreSQL (``initdb``, ``pg_ctl``; Debian's ``postgresql``
package puts them in /usr/lib/postgresql/VERSION/bin). The cluster lives in a fresh temporary folder,
listens on 127.0.0.1 on a free port with trust authentication for local connections only, and is
stopped and removed on exit. PostgreSQL refuses to run as root: when this process is root, the
cluster runs as the ``postgres`` system user (created by the Debian package).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

from lumenrec.errors import ConfigError

__all__ = ["find_pg_bin", "temporary_postgres", "TempPostgres"]


def find_pg_bin(name: str = "initdb") -> str | None:
    """Path of a PostgreSQL cluster tool, or None when PostgreSQL is not installed."""
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return cands[-1] if cands else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TempPostgres:
    """A running temporary cluster: ``url``; ``stop()`` / ``start()`` simulate an outage."""

    def __init__(self, url: str, pg_ctl: str, data: Path, opts: str, logf: Path, run_as: list[str], env: dict) -> None:
        self.url, self._pg_ctl, self._data, self._opts, self._log = url, pg_ctl, data, opts, logf
        self._run_as, self._env = run_as, env

    def _ctl(self, *args: str, timeout_s: float = 60.0) -> None:
        subprocess.run(self._run_as + [self._pg_ctl, "-D", str(self._data), *args], env=self._env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout_s + 10)

    def stop(self) -> None:
        self._ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        self._ctl("-o", self._opts, "-l", str(self._log), "-w", "-t", "60", "start")


@contextlib.contextmanager
def temporary_postgres(*, max_connections: int = 200, user: str = "lumenrec",
                       timeout_s: float = 60.0) -> Iterator[TempPostgres]:
    """Start a private PostgreSQL server; yield it (``.url``); stop and delete it on exit.

    Raises ConfigError when the PostgreSQL binaries are missing (install Debian's ``postgresql``)."""
    initdb, pg_ctl = find_pg_bin("initdb"), find_pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise ConfigError("postgresql", None, "initdb/pg_ctl not found: install PostgreSQL (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="lumenrec-pg-"))
    data, sock, logf = root / "data", root / "sock", root / "server.log"
    sock.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres will not run as root
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError as e:
            shutil.rmtree(root, ignore_errors=True)
            raise ConfigError("postgresql", None, "running as root needs the 'postgres' system user") from e
        for p in (root, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(root, 0o755)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    try:
        subprocess.run(run_as + [initdb, "-D", str(data), "-A", "trust", "-U", user, "--no-sync", "-E", "UTF8"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=timeout_s)
        opts = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections={int(max_connections)} "
                "-c fsync=on -c shared_buffers=32MB")
        subprocess.run(run_as + [pg_ctl, "-D", str(data), "-o", opts, "-l", str(logf), "-w", "-t", str(int(timeout_s)),
                                 "start"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                       timeout=timeout_s + 10)
    except subprocess.CalledProcessError as e:
        tail = logf.read_text(errors="replace")[-1500:] if logf.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start a temporary PostgreSQL: {e.stderr.decode(errors='replace')[-1500:]}\n{tail}") from e
    url = f"postgresql://{user}@127.0.0.1:{port}/postgres"
    try:
        deadline = time.time() + timeout_s
        while time.time() < deadline:  # pg_ctl -w waited for the socket; make sure TCP answers too
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield TempPostgres(url, pg_ctl, data, opts, logf, run_as, env)
    finally:
        subprocess.run(run_as + [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
