"""A PostgreSQL server of the soak's own (initdb + pg_ctl in a directory of its own), so that a
fault can restart it without touching anyone else's. As root, the server runs as ``postgres``
(PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from launcher.triton_local import free_port


def pg_bin(name: str) -> str | None:
    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                      None)


class PrivatePostgres:
    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="satlas-soak-pg-"))  # its own: a root-only parent blocks postgres
        self.data_dir, self.log_file = self.root / "data", self.root / "postgres.log"
        self.as_root = os.geteuid() == 0
        self.user = "postgres" if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")

    @staticmethod
    def available() -> bool:
        return bool(pg_bin("initdb") and pg_bin("pg_ctl"))

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        as_user = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        if check and done.returncode:
            raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        self._run(pg_bin("pg_ctl"), "-D", str(self.data_dir), *args, check=check)

    def start(self) -> "PrivatePostgres":
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(pg_bin("initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", self.user, "--no-sync")
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file),
                     "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200")
        return self

    def restart(self) -> float:
        """As after a crash: an immediate stop (no checkpoint, sessions cut), then a start; its seconds."""
        began = time.monotonic()
        self._pg_ctl("stop", "-m", "immediate", "-w")
        self.start()
        return time.monotonic() - began

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "fast", "-w", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
