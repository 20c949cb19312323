"""Images: the images on every connected image store of the config, with verify, drill,
delete and restore, run by the same engine calls as `twofold image ...` (so with its refusals:
a mounted, busy or too small destination is refused by the engine). An encrypted store
opens with TWOFOLD_PASSPHRASE from the panel's environment, as a timer's does, or with a
passphrase typed here, kept in this process's memory until Lock or the panel's end."""

from __future__ import annotations

import os
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from twofold.core.errors import TwofoldError, UsageError
from twofold.core.humanize import size
from twofold.core.text import plural
from twofold.jobs.clock import SystemClock
from twofold.jobs.config import Config
from twofold.jobs.drives import is_disk, locate
from twofold.jobs.live import LiveProgress
from twofold.web.app import Panel, form_text

STORE_DIR = "twofold-images"


def stores(cfg: Config) -> dict[str, str]:
    """Connected image stores: {folder: the jobs that name it}, image jobs' targets and
    any set target holding a store."""
    found: dict[str, list[str]] = {}
    for job in cfg.jobs():
        where = locate(job.target) if job.target else None
        if where is None:
            continue
        if job.kind == "image" or os.path.isdir(os.path.join(where, STORE_DIR)):
            found.setdefault(where, []).append(job.name)
    return {k: ", ".join(v) for k, v in found.items()}


def routes(panel: Panel) -> list[BaseRoute]:
    """The routes of the Images page."""

    by_env: dict[str, Any] = {}  # stores TWOFOLD_PASSPHRASE opened (its Argon2 run once)

    def target(where: str) -> Any:  # what the engines take: the folder, or it unlocked
        from twofold.jobs.rundue import env_unlocked

        if where in panel.unlocked:
            return panel.unlocked[where]
        if where not in by_env:
            opened = env_unlocked(where)
            if isinstance(opened, str):
                return where  # plain, or no passphrase in the environment
            by_env[where] = opened
        return by_env[where]

    def images(request: Request) -> Response:
        from twofold.image.manage import list_store
        from twofold.vault.objects import StoreLocked

        cfg, _ = panel.config()
        listing: list[dict[str, Any]] = []
        for where, jobs in stores(cfg).items():
            entry: dict[str, Any] = {"where": where, "jobs": jobs, "images": [],
                                     "damaged": {}, "error": None, "locked": False,
                                     "unlocked": where in panel.unlocked}
            if os.path.isdir(os.path.join(where, STORE_DIR)):
                try:
                    found = list_store(target(where))
                    entry["images"] = list(reversed(found.images))
                    entry["damaged"] = found.damaged
                except StoreLocked:
                    entry["locked"] = True
                except TwofoldError as err:
                    entry["error"] = str(err)
            listing.append(entry)
        return panel.page(request, "images.html", "Images", stores=listing)

    def _store(form: Any) -> str:
        cfg, _ = panel.config()
        where = form_text(form, "store")
        if where not in stores(cfg):
            raise UsageError(f"{where} is not a connected image store of the config")
        return where

    async def verify(request: Request) -> Response:
        from twofold.image.verify import verify as verify_images

        form = await request.form()
        image = form_text(form, "image") or None
        try:
            where = _store(form)
        except TwofoldError as err:
            return panel.back("/images", "bad", str(err))

        def work(live: LiveProgress) -> str:
            r = verify_images(target(where), image, live, SystemClock())
            if r.damages:
                raise UsageError(f"DAMAGED: {plural(len(r.damages), 'chunk')} of "
                                 f"{', '.join(r.images)}: {r.damages[0]}")
            return (f"OK: {plural(len(r.images), 'image')}, {plural(r.chunks, 'chunk')}, "
                    f"{size(r.bytes)} checked in {r.seconds:.1f} s")

        panel.runner.start_task(f"verify-{image or 'all'}", "verify",
                                f"Verify {image or 'all images'}", work)
        return panel.back("/images", "good", f"Verifying {image or 'all images'}")

    async def delete(request: Request) -> Response:
        from twofold.image.manage import delete as delete_image

        form = await request.form()
        image = form_text(form, "image")
        try:
            where = _store(form)
            if form_text(form, "confirm") != "yes":
                raise UsageError(f"{image} was not deleted: tick the box that confirms it")
        except TwofoldError as err:
            return panel.back("/images", "bad", str(err))

        def work(live: LiveProgress) -> str:
            r = delete_image(target(where), image, live, SystemClock())
            return f"deleted {image}; {size(r.bytes_freed)} freed, {len(r.kept)} kept"

        panel.runner.start_task(f"delete-{image}", "delete", f"Delete {image}", work)
        return panel.back("/images", "good", f"Deleting {image}")

    async def restore(request: Request) -> Response:
        from twofold.image.restore import restore as restore_image

        form = await request.form()
        image, dest = form_text(form, "image"), form_text(form, "dest").strip()
        try:
            where = _store(form)
            if not os.path.isabs(dest):
                raise UsageError(f"{dest!r} is not a device or a full path",
                                 "e.g. /dev/sdb (not the system disk) or /srv/disk.img")
            disk = os.path.basename(os.path.realpath(dest))
            typed = form_text(form, "confirm_name").strip().removeprefix("/dev/")
            if is_disk(dest) and typed != disk:
                raise UsageError(f"not confirmed: {dest} is a disk, and everything on it "
                                 f"would be replaced; nothing was written",
                                 f"type its name ({disk}) in the confirmation field")
        except TwofoldError as err:
            return panel.back("/images", "bad", str(err))

        def work(live: LiveProgress) -> str:
            r = restore_image(target(where), image, dest, None, live, SystemClock())
            return (f"{image} restored to {r.dest}: {size(r.bytes_written)} written, "
                    f"{size(r.bytes_checked)} read back")

        panel.runner.start_task(f"restore-{image}", "restore", f"Restore {image} to {dest}",
                                work)
        return panel.back("/images", "good", f"Restoring {image} to {dest}")

    async def drill(request: Request) -> Response:
        from twofold.image.drill import drill as drill_image

        form = await request.form()
        image = form_text(form, "image")
        try:
            where = _store(form)
        except TwofoldError as err:
            return panel.back("/images", "bad", str(err))

        def work(live: LiveProgress) -> str:
            rec = drill_image(target(where), image, live, SystemClock())
            if not rec.passed:
                raise UsageError(f"FAILED at {rec.failed_stage}: {rec.reason}",
                                 "the Images page shows the last drill of each image")
            return (f"PASSED: {image} booted ({rec.firmware.upper()} under "
                    f"{rec.accel.upper()}) in {rec.seconds:.0f} s")

        panel.runner.start_task(f"drill-{image}", "drill", f"Drill {image}", work)
        return panel.back("/images", "good", f"Drilling {image}: restore to a scratch copy "
                          "and boot it in QEMU")

    async def unlock(request: Request) -> Response:
        from twofold.blobs.remote import open_target
        from twofold.vault.objects import unlock as open_with

        form = await request.form()
        try:
            where = _store(form)
            secret = form_text(form, "passphrase")
            if not secret:
                raise UsageError("type the store's passphrase to open it")
            panel.unlocked[where] = open_with(open_target(where), secret.encode())
        except TwofoldError as err:
            return panel.back("/images", "bad", str(err))
        return panel.back("/images", "good", f"Opened the encrypted store at {where} "
                          "until you lock it or the panel stops")

    async def lock(request: Request) -> Response:
        form = await request.form()
        where = form_text(form, "store")
        panel.unlocked.pop(where, None)
        return panel.back("/images", "good", f"Locked the store at {where}")

    return [Route("/images", images), Route("/images/verify", verify, methods=["POST"]),
            Route("/images/unlock", unlock, methods=["POST"]),
            Route("/images/lock", lock, methods=["POST"]),
            Route("/images/drill", drill, methods=["POST"]),
            Route("/images/delete", delete, methods=["POST"]),
            Route("/images/restore", restore, methods=["POST"])]
