"""A private PostgreSQL server for one test session (``BUILDHOOK_TEST_POSTGRES=1``).

Debian's ``postgresql`` package provides the programs (``/usr/lib/postgresql/*/bin``);
this starts a throwaway cluster from them in a temporary directory: ``initdb`` with
trust authentication, listening on 127.0.0.1 on a free port with its unix socket in
the same directory, and one database, ``buildhook_test``. Its time zone is not UTC
(Asia/Kolkata, +05:30), as on many real servers. ``stop()`` shuts it down and
removes the directory. PostgreSQL refuses to run as root, so as root the cluster
belongs to the ``postgres`` user the package creates.

    with PostgresServer() as server:
        server.url  # postgresql+psycopg://postgres@127.0.0.1:PORT/buildhook_test
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from buildhook.redis_server import free_port

DATABASE = "buildhook_test"
SUPERUSER = "postgres"


def postgres_bin() -> Path:
    """The newest installed server's bin directory, or a clear error saying what to install."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).resolve().parent
    raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")


class PostgresServer:
    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="buildhook-postgres-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise RuntimeError("running as root needs the postgres user (apt-get install postgresql)") from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.user = SUPERUSER
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str) -> None:
        result = subprocess.run(args, user=self.user, cwd=self.root, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}{log}")

    def start(self) -> PostgresServer:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        options = " ".join([
            "-c listen_addresses=127.0.0.1", f"-c port={self.port}", f"-c unix_socket_directories={self.root}",
            # not UTC, so a datetime that is not converted to UTC shows up in the tests
            "-c max_connections=200", "-c timezone=Asia/Kolkata",
            # a throwaway cluster: durability buys nothing here
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
        ])
        self._run(str(self.bin / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log),
                  "-o", options)
        self.started = True
        self._run(str(self.bin / "createdb"), "-h", str(self.root), "-p", str(self.port), "-U", SUPERUSER, DATABASE)
        return self

    def stop(self) -> None:
        try:
            if self.started:
                self._run(str(self.bin / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data))
                self.started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
