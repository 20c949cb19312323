"""The guided restore's steps: pick an image and a disk, confirm by the disk's name,
restore with progress and read back; restore a backup set onto a disk's file system; and
the same without questions (unattended)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from twofold.cli.rescue_guide import CLOCK, Answers, Guide, LineProgress, image_line
from twofold.core.errors import UsageError
from twofold.core.humanize import size
from twofold.core.text import plural
from twofold.jobs import rescue_scan as scan

if TYPE_CHECKING:
    from twofold.image.manage import ImageInfo
    from twofold.image.repo import Target


def _target(store: scan.FoundStore) -> Target:
    if "://" in store.where:
        from twofold.blobs.remote import open_target

        return open_target(store.where)
    return store.where


def _images(store: scan.FoundStore) -> list[ImageInfo]:
    from twofold.image.manage import list_images

    return sorted(list_images(_target(store)), key=lambda i: i.created_ns, reverse=True)


def _choose_disk(g: Guide, needed: int) -> scan.TargetDisk | None:
    """A disk the user picked that may be written and is large enough; None: back."""
    while True:
        disks = scan.targets(g.stores, g.only)
        g.console.say("Disks (everything on the one you pick is overwritten):")
        for i, d in enumerate(disks, 1):
            why = f"   NOT ALLOWED: {d.refused}" if d.refused else ""
            g.console.say(f"  {i}) {d.path}  {d.model}  {size(d.size)}  {d.contents}{why}")
        pick = g.console.ask("Restore onto which disk? (r: look again, b: back)")
        if pick == "b":
            return None
        if not (pick.isdigit() and 1 <= int(pick) <= len(disks)):
            continue
        d = disks[int(pick) - 1]
        if d.refused:
            g.console.say(f"{d.path} is not allowed: {d.refused}")
        elif d.size < needed:
            g.console.say(f"{d.path} is too small: {size(d.size)}; the image needs "
                          f"{size(needed)} ({needed:,} bytes)")
        else:
            return d


def _confirmed(g: Guide, disk: scan.TargetDisk, what: str) -> bool:
    g.console.say(f"This overwrites {disk.path} ({disk.model}, {size(disk.size)}; now: "
                  f"{disk.contents}) with {what}.")
    typed = g.console.ask(f"Type {disk.name} to go on (anything else: back)")
    return typed in (disk.name, disk.path)


def restore_image_steps(g: Guide, store: scan.FoundStore) -> bool:
    """Pick an image and a disk, confirm, restore; True when restored."""
    images = _images(store)
    if not images:
        g.console.say("This store holds no complete image.")
        return False
    g.console.say("Images, newest first:")
    for i, im in enumerate(images, 1):
        g.console.say(image_line(i, im.name, im.created_ns, im.host, im.source, im.size))
    pick = g.console.ask("Which image? (b: back) [1]") or "1"
    if not (pick.isdigit() and 1 <= int(pick) <= len(images)):
        return False
    image = images[int(pick) - 1]
    disk = _choose_disk(g, image.size)
    if disk is None or not _confirmed(g, disk, f"image {image.name}"):
        return False
    return _restore(g, store, image, disk)


def _restore(g: Guide, store: scan.FoundStore, image: ImageInfo,
             disk: scan.TargetDisk) -> bool:
    from twofold.image.restore import restore

    with g.restoring() as mine:
        if not mine:
            g.console.say("Another console is restoring now; wait for it to finish.")
            return False
        g.console.say(f"Restoring {image.name} to {disk.path}...")
        r = restore(_target(store), image.name, disk.path, None, LineProgress(g.console),
                    CLOCK, readback=True)
    g.console.say(f"Restored {image.name} to {disk.path}: {size(r.bytes_written)} written, "
                  f"{plural(r.chunks, 'chunk')} checked, {size(r.bytes_checked)} read back and "
                  f"verified, {r.seconds:.0f} s.")
    if r.gpt_moved:
        g.console.say("  The GPT's backup copy was moved to the end of the larger disk.")
    g.console.say("Take out the rescue stick or CD before the PC starts again.")
    return True


def _choose_file_system(g: Guide) -> scan.FileSystem | None:
    systems = scan.file_systems(g.stores, g.only)
    g.console.say("File systems to restore into (a folder twofold-restored/ is made):")
    for i, fs in enumerate(systems, 1):
        why = f"   NOT ALLOWED: {fs.refused}" if fs.refused else ""
        label = f' "{fs.label}"' if fs.label else ""
        g.console.say(f"  {i}) {fs.device}  {fs.fstype}{label}  {size(fs.size)}{why}")
    while True:
        pick = g.console.ask("Restore into which? (b: back)")
        if pick == "b":
            return None
        if pick.isdigit() and 1 <= int(pick) <= len(systems):
            fs = systems[int(pick) - 1]
            if not fs.refused:
                return fs
            g.console.say(f"{fs.device} is not allowed: {fs.refused}")


def restore_set_steps(g: Guide, store: scan.FoundStore) -> bool:
    """Restore a backup set into twofold-restored/<set> on a file system of a disk."""
    from twofold.backup.restore import restore
    from twofold.cli.common import local_tz  # with the CLI's consoles: not at start

    for i, name in enumerate(store.sets, 1):
        g.console.say(f"  {i}) backup set {name}")
    pick = g.console.ask("Which backup set? (b: back) [1]") or "1"
    if not (pick.isdigit() and 1 <= int(pick) <= len(store.sets)):
        return False
    set_name = store.sets[int(pick) - 1]
    fs = _choose_file_system(g)
    if fs is None:
        return False
    point = g.base / f"target-{os.path.basename(fs.device)}"
    scan.mount_rw(fs.device, fs.fstype, point)
    try:
        dest = point / "twofold-restored" / set_name
        g.console.say(f"Restoring backup set {set_name} into {fs.device}: "
                      f"twofold-restored/{set_name}...")
        r = restore(store.where, set_name, str(dest), [], None, False,
                    LineProgress(g.console), local_tz())
        os.sync()
    finally:
        scan.unmount(str(point))
    g.console.say(f"Restored backup set {set_name} (run {r.run_name}) into {fs.device}: "
                  f"{plural(r.files, 'file')}, {size(r.bytes)}"
                  + (f"; {len(r.issues)} not restored:" if r.issues else "."))
    for issue in r.issues[:20]:
        g.console.say(f"  {issue.message}")
    return True


def _pick_store(g: Guide, a: Answers) -> scan.FoundStore:
    if "://" in a.store:
        if g.boot:
            scan.network_up()
        return scan.FoundStore(a.store, about="network store", images=True)
    if a.store.startswith("/") and not a.store.startswith("/dev/"):
        return scan.look(scan.FoundStore(a.store))
    g.console.say("Looking for drives with twofold images...")
    g.stores = scan.scan(g.base, g.only)
    for s in g.stores:
        if s.images and (a.store == "auto" or a.store in (s.device, f"/dev/{s.disk}")):
            return s
    raise UsageError(f"no store with images found (store={a.store})",
                     "connect the drive holding twofold-images/, or name it: "
                     "twofold.store=/dev/sdb1, a folder or a URL")


def unattended(g: Guide, a: Answers) -> int:
    """Restore the named image onto the named disk without questions (with yes)."""
    store = _pick_store(g, a)
    images = _images(store)
    chosen = images[:1] if a.image == "latest" else [i for i in images if i.name == a.image]
    if not chosen:
        have = ", ".join(i.name for i in images) or "none"
        raise UsageError(f"image {a.image} is not in {store.where}", f"images there: {have}")
    image = chosen[0]
    disks = {os.path.realpath(d.path): d for d in scan.targets(g.stores, g.only)}
    disk = disks.get(os.path.realpath(a.disk)) if a.disk else None
    if disk is None:
        raise UsageError(f"no disk {a.disk or '(none named)'} to restore to",
                         "name it: twofold.disk=/dev/sdX; disks: " + ", ".join(disks))
    if disk.refused:
        raise UsageError(f"{disk.path} is not allowed: {disk.refused}",
                         "name another disk")
    if disk.size < image.size:
        raise UsageError(f"{disk.path} is too small: {disk.size:,} bytes, the image needs "
                         f"{image.size:,}", "name a disk at least that large")
    g.console.say(f"Unattended: image {image.name} from {store.where} onto {disk.path}")
    if not a.yes and not _confirmed(g, disk, f"image {image.name}"):
        g.console.say("not confirmed; nothing was written")
        return 2
    return 0 if _restore(g, store, image, disk) else 1
