"""`twofold image verify [--heal]` and `twofold image repair`: find damage in a store,
mend what can be mended, and say what was done."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from twofold.cli.common import err, handles_errors, out, print_json, size
from twofold.cli.image_cmd import damaged_notes, image_app
from twofold.cli.image_common import TARGET_HELP, Endpoint, Json
from twofold.cli.image_common import progress_for as _progress
from twofold.cli.image_common import target_of as _target
from twofold.cli.image_key import KeyFile
from twofold.core.errors import ExitCode, UsageError
from twofold.core.text import plural
from twofold.jobs.clock import SystemClock

if TYPE_CHECKING:
    from twofold.image.heal import HealResult
    from twofold.image.repair import RepairResult
    from twofold.image.verify import VerifyResult


def _verify_lines(r: VerifyResult) -> None:
    damaged_notes(r.damaged_manifests)
    for name, problem in r.damaged_files.items():
        err.print(f"[bold red]damaged:[/] {name}: {problem} (not used; twofold image "
                  "repair rebuilds the index)", markup=True)
    for d in r.damages:
        err.print(f"[bold red]damaged:[/] {d}", markup=True)
    if r.recorded_bad:
        err.print(f"{plural(r.recorded_bad, 'damaged chunk copy', 'damaged chunk copies')} "
                  "recorded in the store's bad/ list: the next image create stores them "
                  "again from the disk")
    if r.record_failed:
        err.print(f"[yellow]note:[/] the damaged chunks could not be recorded: "
                  f"{r.record_failed}")
    head = "[bold]OK[/]" if r.sound else "[bold red]DAMAGED[/]"
    found = len(r.damages) + len(r.damaged_manifests) + len(r.damaged_files)
    out.print(f"{head}: {plural(len(r.images), 'image')}, {plural(r.chunks, 'chunk')}, "
              f"{size(r.bytes)} checked in {r.seconds:.1f} s"
              + (f"; {found} damaged" if found else ""))


def _verify_json(r: VerifyResult) -> dict[str, object]:
    return {"images": r.images, "chunks": r.chunks, "bytes": r.bytes,
            "seconds": round(r.seconds, 3), "damages": [vars(d) for d in r.damages],
            "damaged_manifests": r.damaged_manifests, "damaged_files": r.damaged_files,
            "recorded_bad": r.recorded_bad}


def _healed(h: HealResult, as_json: bool) -> int:
    code = int(ExitCode.OK) if h.sound else int(ExitCode.FAILED)
    if as_json:
        print_json({**_verify_json(h.found), "healed": h.healed, "unhealed": h.unhealed,
                    "manifests_healed": h.manifests_healed, "exit_code": code})
        return code
    _verify_lines(h.found)
    if h.found.sound:
        return code
    manifests = "manifest" if len(h.manifests_healed) == 1 else "manifests"
    out.print(f"[bold]healed[/] {plural(h.healed, 'chunk')}"
              + (f" and the {manifests} of {', '.join(h.manifests_healed)}"
                 if h.manifests_healed else "")
              + (f"; [bold red]{plural(h.unhealed, 'chunk')} "
                 f"{'has' if h.unhealed == 1 else 'have'} no good copy there[/]"
                 if h.unhealed else ""), markup=True)
    if h.found.damaged_files:
        out.print("damaged index files or pack indexes remain: twofold image repair mends "
                  "them")
    if h.sound:
        out.print("the damaged images restore again (twofold image verify checks them)")
    return code


@image_app.command("verify")
@handles_errors
def verify_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    image: Annotated[str | None, typer.Argument(
        help="Image to check (default: all).", show_default=False)] = None,
    heal: Annotated[bool, typer.Option(
        "--heal", help="Store good copies of damaged chunks again, taken from --from or "
        "--source.")] = False,
    other: Annotated[str | None, typer.Option(
        "--from", help="Another store holding the same images (heal from it).",
        show_default=False)] = None,
    source: Annotated[str | None, typer.Option(
        "--source", help="The disk, partition or image file that was imaged (heal from it; "
        "only data that still hashes to the image's chunk is taken).",
        show_default=False)] = None,
    key_file: KeyFile = None,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Re-read every chunk of IMAGE (or of all images) and check its hash; with --heal,
    mend the damage from another store or the source disk. Exit 0 sound, 1 damaged."""
    if heal and (other is None) == (source is None):
        raise UsageError("--heal needs --from OTHER_STORE or --source DISK (one of them)")
    if not heal and (other or source):
        raise UsageError("--from and --source go with --heal")
    progress = _progress(as_json)
    try:
        if heal:
            from twofold.image.heal import heal as heal_store

            h = heal_store(_target(target, s3_endpoint, key_file), image, progress, SystemClock(),
                           _target(other, s3_endpoint) if other else None, source)
        else:
            from twofold.image.verify import verify

            r = verify(_target(target, s3_endpoint, key_file), image, progress, SystemClock())
    finally:
        progress.finish()
    if heal:
        raise typer.Exit(_healed(h, as_json))
    code = int(ExitCode.OK) if r.sound else int(ExitCode.FAILED)
    if as_json:
        print_json({**_verify_json(r), "exit_code": code})
    else:
        _verify_lines(r)
    raise typer.Exit(code)


def _repaired(r: RepairResult) -> None:
    for name, problem in r.index_files_damaged.items():
        err.print(f"[bold red]damaged:[/] {name}: {problem} (removed)", markup=True)
    for name, problem in r.packs_damaged.items():
        err.print(f"[bold red]damaged:[/] {name}: {problem}"
                  + (" (written anew from its chunks)" if name in r.packs_rewritten else
                     " (a chunk in it fails its check: twofold image verify)"
                     if name in r.packs_kept_by_index else
                     " (its chunks are lost here: twofold image verify --heal)"), markup=True)
    damaged_notes(r.manifests_damaged)
    done = []
    if r.marker_remade:
        done.append("store.json made again")
    if r.index_written:
        done.append(f"index rebuilt from the packs ({plural(r.packs_reindexed, 'pack')} "
                    f"{'was' if r.packs_reindexed == 1 else 'were'} not described rightly)")
    if r.packs_rewritten:
        done.append(f"{plural(len(r.packs_rewritten), 'pack')} written anew")
    if r.temp_removed:
        done.append(f"{plural(r.temp_removed, 'unfinished file')} removed")
    out.print(f"[bold]{'Repaired' if done else 'Nothing to repair'}[/] {r.store}: "
              f"{plural(r.packs, 'pack')}" + (f"; {'; '.join(done)}" if done else ""))
    if r.manifests_damaged:
        out.print("  damaged images cannot be restored: copy them again (twofold image "
                  "verify --heal --from OTHER_STORE) or delete them (twofold image delete)")
    out.print("  every chunk is checked by twofold image verify")


@image_app.command("repair")
@handles_errors
def repair_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    key_file: KeyFile = None,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Rebuild TARGET's index from its packs, make a damaged store.json again, and name
    damaged manifests and packs. Exit 0 sound, 3 damage remains, 1 failed."""
    progress = _progress(as_json)
    try:
        from twofold.image.repair import repair

        r = repair(_target(target, s3_endpoint, key_file), progress, SystemClock())
    finally:
        progress.finish()
    code = int(ExitCode.PARTIAL) if r.remaining else int(ExitCode.OK)
    if as_json:
        print_json({**vars(r), "exit_code": code})
    else:
        _repaired(r)
    raise typer.Exit(code)
