"""`twofold image export`: every format accepted by qemu-img (check where it has one,
info, compare) and equal to a plain restore; sparse; a damaged chunk, a full drive and
bad input stop it with a clear error and leave no partial file."""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fulldrive import small_drive
from tests.image.conftest import IS_ROOT
from twofold.cli.app import app
from twofold.core.errors import TargetFullError
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.errors import ImageDamaged, ImageRefused
from twofold.image.export import FORMATS, _check_image, export, used_ranges
from twofold.image.reader import ImageReader
from twofold.image.repo import load_manifest, open_store
from twofold.image.restore import restore

from .conftest import NOT_ROOT, FixedClock, MiB, blank, store_files

QEMU_IMG = shutil.which("qemu-img")
needs_qemu_img = pytest.mark.skipif(QEMU_IMG is None,
                                    reason="qemu-img is missing (Debian package qemu-utils)")
CHECKED = {"qcow2", "vhdx", "vmdk"}  # qemu-img has no check for raw and vpc (VHD)
runner = CliRunner()


def qemu_img(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert QEMU_IMG is not None
    return subprocess.run([QEMU_IMG, *map(str, args)], capture_output=True, text=True,
                          check=False)


class Recorder(NullProgress):
    """Keeps the phases and the bytes advanced."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, int | None]] = []
        self.bytes = 0

    def phase(self, name: str, total_files: int | None = None,
              total_bytes: int | None = None) -> None:
        self.phases.append((name, total_bytes))

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        self.bytes += nbytes


def data_bytes(path: Path) -> int:
    """Bytes of `path` that hold data (SEEK_DATA / SEEK_HOLE)."""
    total, pos = 0, 0
    with open(path, "rb") as f:
        end = os.fstat(f.fileno()).st_size
        while pos < end:
            try:
                start = os.lseek(f.fileno(), pos, os.SEEK_DATA)
            except OSError:
                break
            pos = os.lseek(f.fileno(), start, os.SEEK_HOLE)
            total += pos - start
    return total


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as VHDX's checksums use it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc_entry(n: int) -> int:
    for _ in range(8):
        n = (n >> 1) ^ (0x82F63B78 if n & 1 else 0)
    return n


CRC_TABLE = [_crc_entry(n) for n in range(256)]


def vhdx_checksums(head: bytes, _path: Path) -> None:
    """VHDX's own rules: the file identifier, both headers and both region tables carry
    CRC-32C checksums (computed with the field zeroed) that must hold."""
    assert head[:8] == b"vhdxfile"
    for at, size, magic in ((64 << 10, 4096, b"head"), (128 << 10, 4096, b"head"),
                            (192 << 10, 64 << 10, b"regi"), (256 << 10, 64 << 10, b"regi")):
        block = bytearray(head[at:at + size])
        assert block[:4] == magic
        stored = struct.unpack_from("<I", block, 4)[0]
        block[4:8] = bytes(4)
        assert crc32c(bytes(block)) == stored, f"checksum of {magic!r} at {at}"


def vhd_checksums(head: bytes, path: Path) -> None:
    """VHD's own rules: the footer (at the end, copied at the start) and the dynamic
    header carry one's-complement byte sums (the field zeroed) that must hold."""
    with open(path, "rb") as f:
        f.seek(-512, os.SEEK_END)
        footer = f.read(512)
    assert footer == head[:512] and footer[:8] == b"conectix"
    for block, at in ((footer, 64), (head[512:1536], 36)):
        stored = struct.unpack_from(">I", block, at)[0]
        zeroed = block[:at] + bytes(4) + block[at + 4:]
        assert (~sum(zeroed)) & 0xFFFFFFFF == stored
    assert head[512:520] == b"cxsparse"


FORMAT_CHECKS = {"vhdx": vhdx_checksums, "vhd": vhd_checksums}


@pytest.fixture
def volume_store(tmp_path: Path) -> tuple[Path, Path]:
    """A 24 MiB volume (random, text and zero stretches, a hole in the middle) imaged."""
    src = blank(tmp_path / "vol.img", 24 * MiB)
    rng = random.Random(7)
    with open(src, "r+b") as f:
        for offset in (0, 5 * MiB, 17 * MiB):
            f.seek(offset)
            f.write(rng.randbytes(MiB) + b"twofold " * (MiB // 8))
    drive = tmp_path / "drive"
    drive.mkdir()
    create(str(src), str(drive), "vol", 3, None, False, NullProgress(), FixedClock())
    return src, drive


@needs_qemu_img
@pytest.mark.root  # the gpt_disk fixture fills NTFS through ntfs-3g
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_export_equals_restore(fmt: str, gpt_disk: Path, tmp_path: Path) -> None:
    drive = tmp_path / "drive"
    drive.mkdir()
    create(str(gpt_disk), str(drive), "sys", 3, None, False, NullProgress(), FixedClock())
    restored = tmp_path / "restored.raw"
    restore(str(drive), "sys", str(restored), None, NullProgress(), FixedClock())
    out = tmp_path / f"sys.{fmt}"
    progress = Recorder()
    r = export(str(drive), "sys", fmt, str(out), progress, FixedClock())
    assert (r.format, r.size) == (fmt, gpt_disk.stat().st_size)
    info = json.loads(qemu_img("info", "--output=json", out).stdout)
    assert info["format"] == FORMATS[fmt][0] and info["virtual-size"] == r.size
    if fmt in CHECKED:
        check = qemu_img("check", out)
        assert check.returncode == 0 and "No errors were found" in check.stdout, check
    if fmt in FORMAT_CHECKS:
        FORMAT_CHECKS[fmt](out.read_bytes()[:1 << 20], out)
    same = qemu_img("compare", "-f", FORMATS[fmt][0], "-F", "raw", out, restored)
    assert same.returncode == 0 and "Images are identical" in same.stdout, same
    # streamed: only the used ranges were read, and the progress saw every byte of them
    m = load_manifest(open_store(str(drive)).objects, "sys")
    used = sum(e - s for s, e in used_ranges(m))
    assert r.bytes_read == used < r.size // 2
    assert progress.phases == [(f"exporting ({fmt})", used)] and progress.bytes == used
    assert r.file_bytes < used + 8 * MiB  # sparse: the free space takes no room


@needs_qemu_img
def test_raw_export_writes_only_used_ranges(volume_store: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    src, drive = volume_store
    out = tmp_path / "vol.raw"
    r = export(str(drive), "vol", "raw", str(out), NullProgress(), FixedClock())
    assert out.read_bytes() == src.read_bytes()
    m = load_manifest(open_store(str(drive)).objects, "vol")
    stored = sum(e - s for s, e in used_ranges(m, gap=0))
    assert stored == 6 * MiB  # the zero stretches are no chunks
    assert data_bytes(out) <= stored < r.size // 3


@needs_qemu_img
@pytest.mark.parametrize("fmt", ["qcow2", "vmdk"])
def test_damaged_chunk_stops_export_and_names_it(fmt: str, volume_store: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    _src, drive = volume_store
    pack = store_files(drive, ".pack")[0]
    data = bytearray(pack.read_bytes())
    data[len(data) // 3] ^= 0x40  # inside a compressed chunk
    pack.write_bytes(bytes(data))
    out = tmp_path / f"vol.{fmt}"
    with pytest.raises(ImageDamaged, match=r"image vol, volume: chunk [0-9a-f]{64} cannot be "
                       r"read.*(does not decompress|fails its hash check|found damaged before)"
                       r"(?s:.*)partial file "
                       "was removed"):
        export(str(drive), "vol", fmt, str(out), NullProgress(), FixedClock())
    assert not out.exists()
    with pytest.raises(ImageDamaged, match="nothing was written"):  # recorded as bad now
        export(str(drive), "vol", fmt, str(out), NullProgress(), FixedClock())
    assert not out.exists()


@needs_qemu_img
@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason=NOT_ROOT)
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_full_drive_stops_and_removes_the_partial_file(fmt: str,
                                                       volume_store: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    _src, drive = volume_store
    with small_drive(tmp_path / "small", 4) as mnt:
        out = mnt / f"vol.{fmt}"
        with pytest.raises(TargetFullError, match=r"is full.*partial file was removed"):
            export(str(drive), "vol", fmt, str(out), NullProgress(), FixedClock())
        assert not out.exists() and os.listdir(mnt) == ["lost+found"]


def test_file_level_area_refused(volume_store: tuple[Path, Path]) -> None:
    _src, drive = volume_store
    m = load_manifest(open_store(str(drive)).objects, "vol")
    m.areas[0].files = {"meta": [], "data": [], "file_bytes": 0, "params": {}}
    with pytest.raises(ImageRefused,
                       match=r"(?s)taken at file level.*restore it to a file first"):
        _check_image(m.chunk_ids(), m)


@needs_qemu_img
def test_cli_export_and_bad_input(volume_store: tuple[Path, Path], tmp_path: Path) -> None:
    src, drive = volume_store

    def run(*args: str | Path) -> tuple[int, str]:
        result = runner.invoke(app, ["image", "export", *map(str, args)])
        return result.exit_code, result.output

    out = tmp_path / "vol.vhd"
    code, text = run(drive, "vol", "--format", "vhd", "--to", out, "--json")
    assert code == 0, text
    assert json.loads(text)["bytes_read"] == 6 * MiB
    assert qemu_img("compare", "-f", "vpc", out, src).returncode == 0
    code, text = run(drive, "vol", "--format", "vhd", "--to", out)
    assert code == 2 and "already exists" in text
    code, text = run(drive, "vol", "--format", "vdi", "--to", tmp_path / "x.vdi")
    assert code == 2 and "unknown format 'vdi'" in text and "qcow2" in text
    code, text = run(drive, "nope", "--format", "raw", "--to", tmp_path / "x.raw")
    assert code == 2 and "no image 'nope'" in text and "vol" in text
    (tmp_path / "empty").mkdir()
    code, text = run(tmp_path / "empty", "vol", "--format", "raw", "--to", tmp_path / "x.raw")
    assert code == 1 and "no image store" in text
    code, text = run(tmp_path / "gone", "vol", "--format", "raw", "--to", tmp_path / "x.raw")
    assert code == 2 and "does not exist" in text
    code, text = run(drive, "vol", "--format", "raw", "--to", tmp_path / "no" / "x.raw")
    assert code == 2 and "does not exist" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drive", "empty", "vol.img", "vol.vhd"]


class Interrupted(NullProgress):
    """Ctrl-C at the first progress report while qemu-img runs."""

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        raise KeyboardInterrupt


@needs_qemu_img
@pytest.mark.parametrize("fmt", ["vmdk", "qcow2"])
def test_ctrl_c_removes_the_partial_file(fmt: str, volume_store: tuple[Path, Path],
                                         tmp_path: Path) -> None:
    _src, drive = volume_store
    out = tmp_path / f"vol.{fmt}"
    before = _children()  # servers of other tests (sshd, Ceph) may run beside this one
    with pytest.raises(KeyboardInterrupt):
        export(str(drive), "vol", fmt, str(out), Interrupted(), FixedClock())
    assert not out.exists()
    assert _children() - before == set()  # qemu-img was stopped, not left behind


def _children() -> set[str]:
    """The pids of this process's children, from /proc (procps may be absent)."""
    return {c for task in Path(f"/proc/{os.getpid()}/task").iterdir()
            for c in (task / "children").read_text().split()}


def test_reader_views_equal_reads(volume_store: tuple[Path, Path]) -> None:
    src, drive = volume_store
    store = open_store(str(drive))
    reader = ImageReader(store, load_manifest(store.objects, "vol"))
    disk = src.read_bytes()
    rng = random.Random(4)
    spans = [(0, 24 * MiB), (MiB - 5, 10), (6 * MiB - 3, 3 * MiB + 7), (23 * MiB, 2 * MiB)]
    spans += [(rng.randrange(24 * MiB), rng.randrange(1, 3 * MiB)) for _ in range(20)]
    for offset, length in spans:
        got = b"".join(reader.views(offset, length))
        assert got == reader.read(offset, length) == disk[offset:offset + length]


@pytest.mark.root
def test_live_image_refused_with_what_to_do(tmp_path: Path) -> None:
    from .live_disk import live_disk

    store = tmp_path / "store"
    store.mkdir()
    with live_disk(tmp_path) as disk:
        create(disk.dev, str(store), "live", 3, None, False, NullProgress(), FixedClock())
    out = tmp_path / "live.qcow2"
    with pytest.raises(ImageRefused, match=r"(?s)image live holds partition 1 \(ext4\), "
                       r"partition 2 \(vfat\) taken at file level.*twofold image restore "
                       r"STORE live --to disk.raw"):
        export(str(store), "live", "qcow2", str(out), NullProgress(), FixedClock())
    assert not out.exists()


def test_missing_qemu_img_is_named_with_its_package(volume_store: tuple[Path, Path],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _src, drive = volume_store
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = runner.invoke(app, ["image", "export", str(drive), "vol", "--format", "vhdx",
                                 "--to", str(tmp_path / "vol.vhdx")])
    assert result.exit_code == 1, result.output
    assert "qemu-img is not installed" in result.output and "qemu-utils" in result.output
    assert not (tmp_path / "vol.vhdx").exists()
