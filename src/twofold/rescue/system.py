"""The rescue system's root: Debian packages by mmdebstrap (through the host's apt sources,
.debs kept in a cache), twofold's wheels, the init and the trimmed kernel modules."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from twofold.rescue import recipe
from twofold.rescue.host import run

PYVER_DIR = "usr/local/lib/python3/dist-packages"


def bootstrap(root: Path, codename: str, sources: list[str], apt_cache: Path,
              conf: Path) -> None:
    """mmdebstrap the rescue root into `root` (a directory), with .debs from and back to
    `apt_cache` and the initramfs settings in place before the kernel is installed."""
    apt_cache.mkdir(parents=True, exist_ok=True)
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "twofold.conf").write_text(recipe.INITRAMFS_CONF)
    (conf / "twofold-hook").write_text(recipe.INITRAMFS_HOOK)
    q = shlex.quote
    cache, c = q(str(apt_cache)), str(conf)
    cmd = ["mmdebstrap", "--mode=root", "--variant=minbase", "--format=directory",
           "--include=" + ",".join(recipe.PACKAGES), "--skip=essential/unlink",
           "--aptopt=Acquire::Retries \"3\"",
           *(f"--dpkgopt=path-exclude={p}" for p in recipe.DPKG_EXCLUDES),
           *(f"--dpkgopt=path-include={p}" for p in recipe.DPKG_KEEP),
           "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
           f"--setup-hook=sync-in {cache} /var/cache/apt/archives/",
           "--essential-hook=mkdir -p \"$1\"/etc/initramfs-tools/conf.d "
           "\"$1\"/etc/initramfs-tools/hooks",
           f"--essential-hook=cp {q(c + '/twofold.conf')} "
           "\"$1\"/etc/initramfs-tools/conf.d/twofold",
           f"--essential-hook=install -m 755 {q(c + '/twofold-hook')} "
           "\"$1\"/etc/initramfs-tools/hooks/twofold",
           f"--customize-hook=sync-out /var/cache/apt/archives {cache}",
           codename, str(root), *sources]
    run(cmd, "mmdebstrap (Debian packages into the rescue root)")


def install_twofold(root: Path, wheels: Path) -> None:
    """twofold and its dependencies from `wheels`, byte-compiled by the rescue system's
    own Python, and the `twofold` command."""
    import sys

    site = root / PYVER_DIR.replace("python3", _python_dir(root))
    site.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-index", "--find-links", str(wheels), "--no-compile", "--no-deps",
         "--target", str(site), *map(str, sorted(wheels.glob("*.whl")))],
        "installing the wheels into the rescue root")
    shutil.rmtree(site / "bin", ignore_errors=True)
    for name, text in (("twofold", recipe.LAUNCHER), ("twofold-guide", recipe.GUIDE_LAUNCHER)):
        launcher = root / "usr/local/bin" / name
        launcher.write_text(text)
        launcher.chmod(0o755)
    run(["chroot", str(root), "python3", "-m", "compileall", "-q", "-j", "0",
         "/" + str(site.relative_to(root))], "byte-compiling twofold in the rescue root")


def _python_dir(root: Path) -> str:
    found = sorted(p.name for p in (root / "usr/lib").glob("python3.*") if p.is_dir())
    return found[-1] if found else "python3"


def customize(root: Path) -> None:
    """The init and console scripts; kernel drivers a rescue never needs removed; the
    initramfs made again with only what finds the rescue medium."""
    for path, text in ((recipe.INIT, recipe.INIT_SCRIPT), (recipe.LOGIN, recipe.LOGIN_SCRIPT)):
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o755)
    (root / "etc/hostname").write_text("twofold-rescue\n")
    (root / "root").mkdir(exist_ok=True)
    (root / "etc/network").mkdir(exist_ok=True)  # live-boot writes its interfaces file
    for kernel in (root / "lib/modules").iterdir():
        for part in recipe.MODULE_PRUNE:
            shutil.rmtree(kernel / "kernel" / part, ignore_errors=True)
        run(["chroot", str(root), "depmod", "-a", kernel.name], "depmod in the rescue root")
    small_initramfs(root)
    listed = root / recipe.BOOT_FILES.lstrip("/")
    listed.parent.mkdir(parents=True, exist_ok=True)
    listed.write_text(run(["chroot", str(root), "python3", "-c", recipe.BOOT_FILES_PROBE],
                          "listing the files the guide starts with"))
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (root / junk).glob("*"):
            if p.is_file():
                p.unlink()


def small_initramfs(root: Path) -> None:
    """Make each kernel's initramfs again without what other packages' hooks add for an
    installed system (recipe.INITRAMFS_HOOKS_DROPPED, LIVE_HOOK_DROPPED)."""
    hooks = root / "usr/share/initramfs-tools/hooks"
    for name in recipe.INITRAMFS_HOOKS_DROPPED:
        (hooks / name).unlink(missing_ok=True)
    live = hooks / "live"
    if live.is_file():
        kept = [line for line in live.read_text().splitlines(keepends=True)
                if line.strip() not in recipe.LIVE_HOOK_DROPPED]
        live.write_text("".join(kept))
    (root / "etc/live").mkdir(parents=True, exist_ok=True)
    (root / "etc/live/boot.conf").write_text(recipe.LIVE_BOOT_CONF)
    for vmlinuz in sorted((root / "boot").glob("vmlinuz-*")):
        version = vmlinuz.name.removeprefix("vmlinuz-")
        run(["chroot", str(root), "mkinitramfs", "-o", f"/boot/initrd.img-{version}",
             version], "mkinitramfs in the rescue root")


def kernel_files(root: Path) -> tuple[Path, Path]:
    """(vmlinuz, initrd.img) of the newest kernel in the root."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        from twofold.rescue.errors import BuildError

        raise BuildError("the rescue root has no kernel", "linux-image-amd64 did not install")
    vmlinuz = kernels[-1]
    initrd = root / "boot" / ("initrd.img-" + vmlinuz.name.removeprefix("vmlinuz-"))
    return vmlinuz, initrd


def squash(root: Path, out: Path) -> None:
    """The root as a squashfs (zstd level 15: a quarter of xz's build time and faster to
    read under emulation, for about a tenth more size), /boot left out (the ISO carries
    it), the files of recipe.BOOT_FILES first."""
    threads = str(max(1, (os.cpu_count() or 1)))
    first = out.with_name("boot-files.sort")
    listed = root / recipe.BOOT_FILES.lstrip("/")
    names = listed.read_text().split() if listed.is_file() else []
    first.write_text("".join(f"{name.lstrip('/')} 32767\n" for name in names
                             if (root / name.lstrip("/")).is_file()))
    try:
        run(["mksquashfs", str(root), str(out), "-noappend", "-comp", "zstd",
             "-Xcompression-level", "15", "-b", "1M", "-processors", threads,
             "-sort", str(first), "-wildcards", "-e", "boot/*", "-no-progress"],
            "mksquashfs")
    finally:
        first.unlink(missing_ok=True)


def unmount_below(path: Path) -> None:
    """Unmount whatever a killed mmdebstrap left mounted under `path` (before removing
    it, so nothing of the host's /dev or /proc is touched)."""
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as f:
            points = [line.split()[1].encode().decode("unicode_escape") for line in f]
    except OSError:
        return
    for point in sorted((p for p in points if p == real or p.startswith(real + "/")),
                        key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def remove_tree(path: Path) -> None:
    """Remove a work folder, first unmounting anything below it."""
    if path.exists():
        unmount_below(path)
        shutil.rmtree(path, ignore_errors=True)
