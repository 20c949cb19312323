"""The ObjectStore over SFTP (OpenSSH's server, a NAS) through paramiko: one file per
object, written to .tmp/ and renamed into place (SFTP's rename never replaces a file),
one SFTP channel per thread, reconnecting and retrying with backoff."""

from __future__ import annotations

import errno
import getpass
import os
import posixpath
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any, TypeVar

import paramiko

from twofold.blobs.objects import (
    TMP_DIR,
    ObjectInfo,
    StoreError,
    check_name,
    dead_writer,
    temp_name,
    this_host,
)
from twofold.blobs.remote import SftpTarget
from twofold.blobs.retry import Gone, RetryPolicy, Transient, found, read_or_missing

T = TypeVar("T")
SSH_CONFIG_ENV = "TWOFOLD_SSH_CONFIG"
"""An ssh_config file to read instead of ~/.ssh/config (IdentityFile, Port, User,
UserKnownHostsFile, StrictHostKeyChecking)."""
STALE_TEMP_S = 86_400
_NET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.ECONNREFUSED,
               errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNABORTED}


def _ssh_config(host: str) -> dict[str, Any]:
    path = os.environ.get(SSH_CONFIG_ENV) or os.path.expanduser("~/.ssh/config")
    config = paramiko.SSHConfig()
    try:
        with open(path) as f:
            config.parse(f)
    except OSError:
        return {}
    return dict(config.lookup(host))


class SftpObjects:
    """An ObjectStore in the folder `base` on an SFTP server. Keys and host keys come from
    ssh's own files (and the agent); a host not in known_hosts is refused."""

    writers = 4

    def __init__(self, target: SftpTarget, base: str, policy: RetryPolicy) -> None:
        self.target = target
        self.base = base
        self.policy = policy
        self._client: Any = None
        self._generation = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._dirs: set[str] = set()
        self._host = this_host()
        self._swept = False

    def describe(self) -> str:
        """The URL of the store's folder (never a password)."""
        return f"{self.target.url().rstrip('/')}/{self.base.rsplit('/', 1)[-1]}"

    # -- the connection --------------------------------------------------------------

    def _sftp(self) -> Any:
        """This thread's SFTP channel, connecting first when needed."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
                self._generation += 1
            generation, client = self._generation, self._client
        if getattr(self._local, "generation", None) != generation:
            self._local.sftp = paramiko.SFTPClient.from_transport(client.get_transport())
            self._local.generation = generation
        return self._local.sftp

    def _connect(self) -> Any:
        t = self.target
        cfg = _ssh_config(t.host)
        client = paramiko.SSHClient()
        client.load_system_host_keys()
        for known in str(cfg.get("userknownhostsfile", "")).split():
            path = os.path.expanduser(known)
            if os.path.exists(path):
                client.get_host_keys().load(path)
        strict = str(cfg.get("stricthostkeychecking", "yes")).lower()
        client.set_missing_host_key_policy(
            paramiko.AutoAddPolicy() if strict in ("no", "off") else paramiko.RejectPolicy())
        keys = [os.path.expanduser(k) for k in cfg.get("identityfile", [])
                if os.path.exists(os.path.expanduser(k))]
        try:
            client.connect(cfg.get("hostname", t.host), t.port or int(cfg.get("port", 22)),
                           username=t.user or cfg.get("user") or getpass.getuser(),
                           password=t.password, key_filename=keys or None, timeout=10,
                           banner_timeout=10, auth_timeout=10)
        except paramiko.AuthenticationException:
            raise StoreError(f"the SFTP server {self.describe()} refused the login",
                             "check the user and that your key is in its "
                             "authorized_keys (ssh-copy-id)") from None
        except paramiko.BadHostKeyException:
            raise StoreError(f"the host key of {t.host} is not the one known_hosts holds",
                             "someone may be impersonating the server; check it, then "
                             "fix known_hosts") from None
        except paramiko.SSHException as err:
            if "known_hosts" in str(err):
                raise StoreError(f"{t.host} is not in known_hosts",
                                 f"connect once with ssh (or ssh-keyscan {t.host} >> "
                                 "~/.ssh/known_hosts) after checking its key") from None
            raise Transient(f"SSH failed: {err}") from None
        except OSError as err:
            raise Transient(f"cannot connect: {err.strerror or type(err).__name__}") \
                from None
        return client

    def _reset(self) -> None:
        """Drop the connection; the next call reconnects."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _alive(self) -> bool:
        client = self._client
        transport = client.get_transport() if client is not None else None
        return bool(transport is not None and transport.is_active())

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """`fn(sftp)` with retries; errors become StoreError or Gone."""
        def once() -> T:
            try:
                return fn(self._sftp())
            except FileNotFoundError:
                raise Gone from None
            except (EOFError, paramiko.SSHException, TimeoutError, ConnectionError) as err:
                raise Transient(f"connection lost ({type(err).__name__})") from None
            except OSError as err:
                if err.errno in _NET_ERRNOS or (err.errno is None and not self._alive()):
                    raise Transient(f"connection lost ({err})") from None
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StoreError(f"the image store {self.describe()} is full "
                                     f"({what})", "free some space on the server") from None
                raise StoreError(f"SFTP {what} failed in {self.describe()}: "
                                 f"{err.strerror or err}") from None
        return self.policy.run(once, self.describe(), what, recover=self._reset)

    # -- the protocol ----------------------------------------------------------------

    def _path(self, name: str) -> str:
        return f"{self.base}/{check_name(name)}"

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Walk the folder below the deepest directory named by `prefix`."""
        head = prefix.rpartition("/")[0]

        def run(sftp: Any) -> list[ObjectInfo]:
            found = self._walk(sftp, f"{self.base}/{head}" if head else self.base, head)
            return sorted((i for i in found if i.name.startswith(prefix)),
                          key=lambda i: i.name)
        try:
            return self._call(f"listing {prefix or 'the store'}", run)
        except Gone:
            return []

    def _walk(self, sftp: Any, folder: str, rel: str) -> Iterator[ObjectInfo]:
        try:
            entries = sftp.listdir_attr(folder)
        except FileNotFoundError:
            return
        for e in entries:
            name = f"{rel}/{e.filename}" if rel else e.filename
            if name == TMP_DIR:
                continue
            if stat.S_ISDIR(e.st_mode or 0):
                yield from self._walk(sftp, f"{folder}/{e.filename}", name)
            elif stat.S_ISREG(e.st_mode or 0):
                yield ObjectInfo(name, int(e.st_size or 0))

    def get(self, name: str) -> bytes:
        """Read the whole file (pipelined)."""
        def run(sftp: Any) -> bytes:
            with sftp.open(self._path(name), "rb") as f:
                f.prefetch()
                return bytes(f.read())
        return self._read(name, run)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """One pipelined ranged read."""
        def run(sftp: Any) -> bytes:
            with sftp.open(self._path(name), "rb") as f:
                size = f.stat().st_size or 0
                n = max(0, min(length, size - offset))
                return b"".join(f.readv([(offset, n)])) if n else b""
        return self._read(name, run)

    def _read(self, name: str, run: Callable[[Any], bytes]) -> bytes:
        return read_or_missing(lambda: self._call(f"reading {name}", run), name,
                               self.describe())

    def exists(self, name: str) -> bool:
        """stat the file."""
        return found(lambda: self._call(f"checking {name}",
                                        lambda sftp: sftp.stat(self._path(name))))

    def put_once(self, name: str, data: bytes) -> bool:
        """Write .tmp/<host>-<pid>-<random>, then rename it into place: OpenSSH's server
        renames with link() + unlink(), so an existing name is never replaced."""
        final = self._path(name)
        if self.exists(name):
            return False
        tmp = f"{self.base}/{TMP_DIR}/{temp_name(self._host)}"

        def run(sftp: Any) -> bool:
            if not self._swept:
                self._sweep(sftp, lambda n, a: self._abandoned(n, a.st_mtime or 0))
            self._makedirs(sftp, posixpath.dirname(final))
            with sftp.open(tmp, "wb") as f:
                f.set_pipelined(True)
                f.write(data)
            try:
                sftp.rename(tmp, final)
            except OSError:
                if not self._alive():
                    raise
                with suppress(OSError):
                    sftp.remove(tmp)
                try:
                    sftp.stat(final)
                except FileNotFoundError:
                    raise  # a failure that is not "the name exists"
                return False
            return True
        return self._call(f"writing {name}", run)

    def _makedirs(self, sftp: Any, folder: str) -> None:
        todo = []
        while folder and folder not in self._dirs and folder not in ("/", "."):
            todo.append(folder)
            folder = posixpath.dirname(folder)
        for path in reversed([self.base + "/" + TMP_DIR, *todo]):
            if path in self._dirs:
                continue
            try:
                sftp.mkdir(path)
            except OSError:
                sftp.stat(path)  # FileNotFoundError when it could not be made
            self._dirs.add(path)

    def _abandoned(self, name: str, mtime: float) -> bool:
        """A temp file of a writer of this host whose process is gone, or a day old."""
        return dead_writer(name, self._host) or time.time() - mtime > STALE_TEMP_S

    def _sweep(self, sftp: Any, doomed: Callable[[str, Any], bool]) -> int:
        self._swept = True
        count = 0
        try:
            entries = sftp.listdir_attr(f"{self.base}/{TMP_DIR}")
        except FileNotFoundError:
            return 0
        for e in entries:
            if doomed(e.filename, e):
                with suppress(OSError):
                    sftp.remove(f"{self.base}/{TMP_DIR}/{e.filename}")
                    count += 1
        return count

    def delete(self, name: str) -> None:
        """Remove the file, then its folders while they are empty."""
        path = self._path(name)

        def run(sftp: Any) -> None:
            try:
                sftp.remove(path)
            except FileNotFoundError:
                return
            folder = posixpath.dirname(path)
            while folder != self.base and folder.startswith(self.base + "/"):
                try:
                    sftp.rmdir(folder)
                except OSError:
                    break
                self._dirs.discard(folder)
                folder = posixpath.dirname(folder)
        self._call(f"deleting {name}", run)

    def discard_partial(self) -> int:
        """Remove every temp file (only called while no writer may run)."""
        return self._call("removing unfinished writes",
                          lambda sftp: self._sweep(sftp, lambda n, a: True))

