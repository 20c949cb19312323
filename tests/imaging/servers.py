"""Real servers on 127.0.0.1 for the remote store tests: OpenSSH's sshd with generated
keys, and a single-node Ceph with its S3 gateway (../shared/tools/ceph-rgw.sh). Each is
started once per session; a test skips with the reason when one cannot start."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
_CEPH_PLACES = [os.environ.get("TWOFOLD_CEPH_RGW", ""), shutil.which("ceph-rgw.sh") or "",
                REPO.parent / "shared" / "tools" / "ceph-rgw.sh", "/work/shared/tools/ceph-rgw.sh"]
CEPH_SCRIPT = next((Path(p) for p in _CEPH_PLACES if p and Path(p).exists()),
                   REPO.parent / "shared" / "tools" / "ceph-rgw.sh")
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, seconds: float) -> bool:
    """True once something accepts connections on the port."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


@dataclass
class Sshd:
    """A running sshd: its port, and the ssh_config file that reaches it with our key."""

    port: int
    config: Path
    user: str
    proc: subprocess.Popen[bytes]

    def url(self, folder: Path) -> str:
        """The sftp:// target for a local folder (the server runs on this machine)."""
        return f"sftp://{self.user}@127.0.0.1:{self.port}{folder}"

    def env(self) -> dict[str, str]:
        """What a twofold process needs to reach this server."""
        return {"TWOFOLD_SSH_CONFIG": str(self.config)}

    def stop(self) -> None:
        """Stop the server."""
        self.proc.terminate()
        self.proc.wait(10)


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)
    return path.with_suffix(".pub").read_text().strip()


class Server(Protocol):
    """A server a session fixture runs."""

    def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


def _serve(server: S | str) -> Iterator[S]:
    """A session fixture's body: skip with the reason, or yield and stop at the end."""
    if isinstance(server, str):
        pytest.skip(server)
    try:
        yield server
    finally:
        server.stop()


def start_sshd(d: Path) -> Sshd | str:
    """OpenSSH's sshd on a free port of 127.0.0.1, accepting a key made for it in `d`;
    or why it cannot start."""
    if not os.path.exists(SSHD) or not shutil.which("ssh-keygen"):
        return "sshd is not installed (Debian package openssh-server)"
    host_pub = _keygen(d / "host_key")
    (d / "authorized_keys").write_text(_keygen(d / "id_ed25519") + "\n")
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/pid\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nMaxSessions 64\n"
        "MaxStartups 64\nLogLevel ERROR\n")
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    (d / "ssh_config").write_text(
        f"Host 127.0.0.1\n  IdentityFile {d}/id_ed25519\n"
        f"  UserKnownHostsFile {d}/known_hosts\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # the privilege separation folder
    with open(d / "log", "wb") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=log)
    if not wait_port(port, 10):
        proc.kill()
        return f"sshd did not start: {(d / 'log').read_text()[-300:]}"
    return Sshd(port, d / "ssh_config", getpass.getuser(), proc)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """The session's sshd (skips with the reason when it cannot start)."""
    yield from _serve(start_sshd(tmp_path_factory.mktemp("sshd")))


@dataclass
class Ceph:
    """A running single-node Ceph: its S3 environment and its gateway's controls."""

    env: dict[str, str]
    folder: Path
    port: int
    script_env: dict[str, str]

    def stop(self) -> None:
        """Stop every daemon (SIGKILL: a throw-away cluster) and delete the cluster."""
        _script(self.script_env, "kill")

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return self.env["AWS_ENDPOINT_URL"]

    def client(self) -> object:
        """A boto3 S3 client for checks (listing uploads, making buckets)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            config=Config(request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"t-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def stop_gateway(self) -> None:
        """Stop radosgw (the S3 endpoint goes away; the cluster stays)."""
        pid = int((self.folder / "run" / "client.rgw.s3.pid").read_text())
        os.kill(pid, 9)
        while os.path.exists(f"/proc/{pid}") and \
                Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
            time.sleep(0.05)

    def start_gateway(self) -> None:
        """Start radosgw again and wait until it answers."""
        subprocess.run(["radosgw", "-c", str(self.folder / "ceph.conf"), "-n",
                        "client.rgw.s3"], check=True)
        assert wait_port(self.port, 60), "radosgw did not come back"


def _script(env: dict[str, str], action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CEPH_SCRIPT), action], env=env, capture_output=True,
                          text=True, check=False)


def start_ceph() -> Ceph | str:
    """A fresh single-node Ceph with its S3 gateway on 127.0.0.1; or why it cannot start."""
    if not CEPH_SCRIPT.exists():
        return f"{CEPH_SCRIPT} is missing (set TWOFOLD_CEPH_RGW)"
    if not shutil.which("radosgw"):
        return "Ceph is not installed (ceph-mon ceph-mgr ceph-osd radosgw ceph-common)"
    folder = Path(tempfile.mkdtemp(prefix="tfceph", dir="/tmp"))
    port = free_port()
    env = {**os.environ, "CEPH_DIR": str(folder), "RGW_PORT": str(port),
           "MON_PORT": str(free_port()), "OSD_SIZE": "8G", "CEPH_MGR": "0"}
    started = _script(env, "start")
    if started.returncode != 0:
        _script(env, "kill")
        return f"Ceph did not start: {started.stderr[-400:]}"
    s3_env = {}
    for line in started.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[7:].partition("=")
            s3_env[key] = value
    return Ceph(s3_env, folder, port, env)


@pytest.fixture(scope="session")
def ceph() -> Iterator[Ceph]:
    """Ceph's S3 gateway, one cluster for the whole session (skips when it cannot start)."""
    yield from _serve(start_ceph())
