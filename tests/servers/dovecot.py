"""A private Dovecot IMAP server, so sync code is tested against a real IMAP implementation.

Each ``DovecotServer`` owns a temporary directory holding its config, runtime sockets, log,
passwd-file and the users' homes. It listens on a free loopback port, speaks plain IMAP
(no TLS unless given a certificate) and can be killed and restarted on the same port with
the same mail data.

With ``tls=TlsFiles(...)`` it also serves implicit TLS (IMAPS) on a second free loopback
port and offers STARTTLS on the plain port, using the given certificate and key.

Dovecot refuses to serve mail as root, so every user gets its own unused uid/gid
(60000 and up). The passwd-file userdb does not need these ids in ``/etc/passwd``.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DOVECOT_BIN = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM_BIN = shutil.which("doveadm") or "/usr/bin/doveadm"
HOST = "127.0.0.1"
# The host name TLS test certificates are issued for; it resolves to HOST.
TLS_SERVER_NAME = "localhost"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
KILL_TIMEOUT = 5.0
DOVEADM_TIMEOUT = 30.0

_FIRST_MAIL_UID = 60000
_LAST_MAIL_UID = 64999
_uid_lock = threading.Lock()
_next_uid = _FIRST_MAIL_UID

_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]{0,63}$")
_PASSWORD_FORBIDDEN = re.compile(r"[:\r\n\x00]")
_EXTRA_FORBIDDEN = re.compile(r"[:\s\x00]")

_CONFIG_TEMPLATE = """\
# Private test instance; nothing here touches the system Dovecot.
base_dir = {base_dir}
state_dir = {state_dir}
log_path = {log_path}
info_log_path = {log_path}
instance_name = mailcrm-test-{port}
protocols = imap
listen = {host}
{ssl_settings}
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2
auth_verbose = yes
first_valid_uid = 1000
first_valid_gid = 1000
mail_location = maildir:~/Maildir
mail_max_userip_connections = 1000
mailbox_idle_check_interval = 1 secs
verbose_proctitle = yes

# One passwd-file per user: Dovecot re-reads a changed passwd-file at most once per
# second, so users added in quick succession would be unknown for a moment.
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users_dir}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users_dir}/%u
}}

namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
}}

service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {tls_port}
  }}
}}
"""


class DovecotError(RuntimeError):
    """Dovecot could not be started, stopped or driven; the message carries its log."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM certificate chain and private key Dovecot serves TLS with."""

    cert_chain_pem: bytes
    private_key_pem: bytes


@dataclass(frozen=True)
class ImapCredentials:
    """Login data for one test mailbox on a private Dovecot."""

    username: str
    password: str
    host: str
    port: int
    uid: int
    home: Path
    tls_port: int | None = None

    @property
    def maildir(self) -> Path:
        return self.home / "Maildir"


def dovecot_available() -> str | None:
    """Return None when a private Dovecot can run here, else the reason it cannot."""
    for binary in (DOVECOT_BIN, DOVEADM_BIN):
        if not os.access(binary, os.X_OK):
            return f"{binary} not found (install dovecot-imapd, see .ci/install-services)"
    if os.geteuid() != 0:
        return "a private Dovecot must run as root so it can switch to the mail users' uids"
    for user in ("dovecot", "dovenull"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"system user {user!r} missing (created by the dovecot-core package)"
    return None


def free_port(host: str = HOST) -> int:
    """Ask the kernel for an unused TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _allocate_mail_uid() -> int:
    """Hand out a uid/gid pair unused by the system, so mail files never belong to a real user."""
    global _next_uid
    with _uid_lock:
        while _next_uid <= _LAST_MAIL_UID:
            candidate = _next_uid
            _next_uid += 1
            try:
                pwd.getpwuid(candidate)
                continue
            except KeyError:
                pass
            try:
                grp.getgrgid(candidate)
                continue
            except KeyError:
                return candidate
    raise DovecotError("no free uid left for test mail users")


def _live_group_members(pgid: int) -> list[int]:
    """Pids of non-zombie processes in process group ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


class DovecotServer:
    """A Dovecot instance private to the test run, listening on a free loopback port."""

    def __init__(
        self, root: Path | None = None, port: int | None = None, tls: TlsFiles | None = None
    ) -> None:
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="mailcrm-dovecot-"))
        self.root = root
        # Mail users and the login processes run as other uids and must traverse this tree.
        self.root.chmod(0o755)
        self._port = port or free_port()
        self.tls = tls
        self._tls_port = free_port() if tls is not None else None
        self.config_path = self.root / "dovecot.conf"
        self.users_dir = self.root / "users"
        self.log_path = self.root / "dovecot.log"
        self.stderr_path = self.root / "dovecot.stderr"
        self.homes = self.root / "homes"
        self._proc: subprocess.Popen[bytes] | None = None
        self._users: dict[str, ImapCredentials] = {}
        self._lock = threading.Lock()
        self._atexit_registered = False
        self._write_config()

    # -- properties -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def tls_port(self) -> int | None:
        """The implicit-TLS (IMAPS) port, or None without a certificate."""
        return self._tls_port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start Dovecot in the foreground and wait until it greets IMAP clients."""
        if self.running:
            return
        reason = dovecot_available()
        if reason is not None:
            raise DovecotError(reason)
        # A SIGKILLed master leaves its pid file behind; its pid may have been reused since.
        with contextlib.suppress(FileNotFoundError):
            (self.root / "run" / "master.pid").unlink()
        with self.stderr_path.open("ab") as stderr:
            self._proc = subprocess.Popen(
                [DOVECOT_BIN, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                # Own process group: stop()/kill() then reach every Dovecot child too.
                start_new_session=True,
            )
        if not self._atexit_registered:
            atexit.register(self._kill_group_quietly)
            self._atexit_registered = True
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Shut Dovecot down (SIGTERM, then SIGKILL after ``timeout``) with all its children."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(proc.pid, signal.SIGKILL)
        self._finish(proc)

    def kill(self) -> None:
        """SIGKILL Dovecot and all its children at once, as a crash would."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(proc.pid, signal.SIGKILL)
        self._finish(proc)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop (if running) and start again on the same port with the same mail data."""
        self.stop()
        self.start(timeout)

    def ensure_running(self) -> None:
        """Start again after a test left the server killed or stopped."""
        if not self.running:
            if self._proc is not None:
                self._finish(self._proc)
            self.start()

    def close(self) -> None:
        """Stop the server and delete its directory, including all mail."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- users and mail ---------------------------------------------------------------------

    def add_user(
        self,
        name: str | None = None,
        password: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> ImapCredentials:
        """Create a mailbox user with its own uid and an empty home; random values if omitted.

        ``settings`` override Dovecot settings for this user only (userdb extra fields),
        e.g. ``{"imap_capability": "IMAP4rev1"}`` or
        ``{"namespace/inbox/mailbox/Sent/auto": "no"}``; values cannot contain spaces.
        """
        if name is None:
            name = f"user-{secrets.token_hex(4)}"
        if password is None:
            password = secrets.token_urlsafe(12)
        if not _USERNAME_RE.match(name):
            raise ValueError(f"unsupported test username {name!r}")
        if _PASSWORD_FORBIDDEN.search(password):
            raise ValueError("password must not contain ':', CR, LF or NUL (passwd-file format)")
        settings = settings or {}
        if any(_EXTRA_FORBIDDEN.search(key + value) for key, value in settings.items()):
            raise ValueError("per-user settings must not contain spaces, ':', CR, LF or NUL")
        extra = " ".join(f"userdb_{key}={value}" for key, value in settings.items())
        with self._lock:
            if name in self._users:
                raise ValueError(f"user {name!r} already exists")
            uid = _allocate_mail_uid()
            self.homes.mkdir(mode=0o755, exist_ok=True)
            self.homes.chmod(0o755)
            home = self.homes / name
            home.mkdir(mode=0o700)
            os.chown(home, uid, uid)
            creds = ImapCredentials(name, password, self.host, self.port, uid, home, self._tls_port)
            self._write_passwd_file(creds, extra)
            self._users[name] = creds
        return creds

    def user(self, name: str) -> ImapCredentials:
        """Credentials of a user added earlier, looked up by name."""
        return self._users[name]

    def deliver(self, user: str | ImapCredentials, raw: bytes, folder: str = "INBOX") -> None:
        """Store ``raw`` in ``folder`` as new mail (unseen, next UID), as an MTA would."""
        name = user.username if isinstance(user, ImapCredentials) else user
        if self.running:
            self.doveadm("save", "-u", name, "-m", folder, input=raw)
        else:
            # doveadm needs the running auth service for the userdb lookup.
            self._deliver_to_maildir(self._users[name], raw, folder)

    def create_folder(self, user: str | ImapCredentials, name: str, subscribe: bool = True) -> None:
        """Create (and by default subscribe) a mailbox; ``/`` separates hierarchy levels."""
        username = user.username if isinstance(user, ImapCredentials) else user
        args = ["mailbox", "create", "-u", username]
        if subscribe:
            args.append("-s")
        self.doveadm(*args, name)

    def doveadm(self, *args: str, input: bytes | None = None) -> str:
        """Run a doveadm command against this instance; needs the server running (userdb)."""
        cmd = [DOVEADM_BIN, "-c", str(self.config_path), *args]
        try:
            result = subprocess.run(
                cmd,
                input=input if input is not None else b"",
                capture_output=True,
                timeout=DOVEADM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DovecotError(f"{' '.join(cmd)} timed out\n{self.log_text()}") from exc
        if result.returncode != 0:
            raise DovecotError(
                f"{' '.join(cmd)} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')}\n{self.log_text()}"
            )
        return result.stdout.decode(errors="replace")

    def log_text(self) -> str:
        """Dovecot's log plus anything it printed before its log was set up."""
        parts = []
        for path in (self.stderr_path, self.log_path):
            with contextlib.suppress(FileNotFoundError):
                text = path.read_text(errors="replace")
                if text:
                    parts.append(f"--- {path.name} ---\n{text}")
        return "\n".join(parts)

    # -- internals --------------------------------------------------------------------------

    def _write_config(self) -> None:
        (self.root / "run").mkdir(mode=0o755, exist_ok=True)
        (self.root / "state").mkdir(mode=0o750, exist_ok=True)
        # The auth process runs as the unprivileged ``dovecot`` user and must read these.
        self.users_dir.mkdir(mode=0o750, exist_ok=True)
        os.chown(self.users_dir, 0, pwd.getpwnam("dovecot").pw_gid)
        ssl_settings = "ssl = no"
        if self.tls is not None:
            # Read by Dovecot's config process, which runs as root.
            tls_dir = self.root / "tls"
            tls_dir.mkdir(mode=0o700, exist_ok=True)
            cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
            cert.write_bytes(self.tls.cert_chain_pem)
            key.touch(mode=0o600)
            key.write_bytes(self.tls.private_key_pem)
            ssl_settings = f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}"
        self.config_path.write_text(
            _CONFIG_TEMPLATE.format(
                base_dir=self.root / "run",
                state_dir=self.root / "state",
                log_path=self.log_path,
                users_dir=self.users_dir,
                host=self.host,
                port=self.port,
                tls_port=self._tls_port or 0,
                ssl_settings=ssl_settings,
            )
        )

    def _write_passwd_file(self, creds: ImapCredentials, extra: str = "") -> None:
        # user:password:uid:gid:gecos:home:shell:extra
        c = creds
        line = f"{c.username}:{{PLAIN}}{c.password}:{c.uid}:{c.uid}::{c.home}::{extra}\n"
        path = self.users_dir / creds.username
        # Written aside and renamed so the auth process never reads a partial line.
        tmp = self.users_dir / f".{creds.username}.tmp"
        tmp.write_text(line)
        os.chown(tmp, 0, pwd.getpwnam("dovecot").pw_gid)
        tmp.chmod(0o640)
        tmp.replace(path)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc is not None else None
                raise DovecotError(f"dovecot exited with {code} during startup\n{self.log_text()}")
            try:
                if self._greeting(deadline).startswith(b"* OK") and self._tls_listening():
                    return
            except OSError as exc:
                last_error = exc
            time.sleep(0.05)
        raise DovecotError(
            f"dovecot did not greet on {self.host}:{self.port} within {timeout}s "
            f"({last_error})\n{self.log_text()}"
        )

    def _tls_listening(self) -> bool:
        if self._tls_port is None:
            return True
        with socket.create_connection((self.host, self._tls_port), timeout=2.0):
            return True

    def _greeting(self, deadline: float) -> bytes:
        remaining = max(0.1, deadline - time.monotonic())
        with socket.create_connection((self.host, self.port), timeout=min(2.0, remaining)) as s:
            data = b""
            while b"\r\n" not in data and time.monotonic() < deadline:
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
            with contextlib.suppress(OSError):
                s.sendall(b"a LOGOUT\r\n")
            return data

    def _deliver_to_maildir(self, creds: ImapCredentials, raw: bytes, folder: str) -> None:
        """Drop a file into ``new/`` as a local MDA would; Dovecot indexes it on next access."""
        if folder.upper() == "INBOX":
            box = creds.maildir
        elif folder.isascii() and folder.isprintable() and not set(folder) & {"&", ".", "~"}:
            box = creds.maildir / ("." + folder.replace("/", "."))
        else:
            raise DovecotError(f"cannot deliver to {folder!r} while dovecot is stopped")
        for path in (creds.maildir, box, box / "cur", box / "new", box / "tmp"):
            path.mkdir(mode=0o700, exist_ok=True)
            os.chown(path, creds.uid, creds.uid)
        if box != creds.maildir:
            (box / "maildirfolder").touch(mode=0o600)
            os.chown(box / "maildirfolder", creds.uid, creds.uid)
        now = time.time()
        unique = (
            f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{secrets.token_hex(4)}"
            f".{socket.gethostname()},S={len(raw)}"
        )
        tmp = box / "tmp" / unique
        tmp.write_bytes(raw)
        os.chown(tmp, creds.uid, creds.uid)
        tmp.chmod(0o600)
        tmp.rename(box / "new" / unique)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def _finish(self, proc: subprocess.Popen[bytes]) -> None:
        """Reap the master, then make sure no child still holds the port or the mail files."""
        try:
            proc.wait(timeout=KILL_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise DovecotError(f"dovecot pid {proc.pid} did not exit after SIGKILL") from exc
        self._proc = None
        # Children die asynchronously after the group signal; a surviving imap-login would
        # still accept connections. While any member lives, the group id cannot be reused.
        deadline = time.monotonic() + KILL_TIMEOUT
        while members := _live_group_members(proc.pid):
            if time.monotonic() > deadline:
                raise DovecotError(f"dovecot children {members} survived SIGKILL")
            self._signal_group(proc.pid, signal.SIGKILL)
            time.sleep(0.02)

    def _kill_group_quietly(self) -> None:
        """Last resort at interpreter exit so an aborted run leaves no Dovecot behind."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self._signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                self._finish(proc)
