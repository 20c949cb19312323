"""`twofold verify`: re-read the backup and check every copy against its BLAKE3."""

from __future__ import annotations

from typing import Annotated

import typer

from twofold.backup.verify import verify
from twofold.cli.common import err, handles_errors, issue_dict, out, print_issues, print_json, size
from twofold.cli.render import RichProgress
from twofold.core.errors import ExitCode
from twofold.core.progress import NullProgress, Progress
from twofold.core.text import plural


@handles_errors
def verify_command(
    source: Annotated[str, typer.Option("--from", help="The target holding the backup.")]
    = ...,  # type: ignore[assignment]
    set_name: Annotated[str, typer.Option("--set", help="Backup set.")] = "default",
    sample: Annotated[float | None, typer.Option(
        "--sample", min=0.0, max=100.0, help="Check only this percent of the copies.")] = None,
    against_source: Annotated[bool, typer.Option(
        "--against-source", help="Also compare the backup with the source folders.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for --sample.")] = None,
    heal: Annotated[bool, typer.Option(
        "--heal", help="Copy damaged or missing copies again from the source now, where "
        "the source still has the content the catalog records.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
    = False,
) -> None:
    """Re-read kept copies and name each one whose content changed (exit 1 if any, unless
    --heal healed them all)."""
    progress: Progress = NullProgress() if as_json else RichProgress(err)
    try:
        result = verify(source, set_name, progress, sample=sample,
                        against_source=against_source, seed=seed, heal=heal)
    finally:
        progress.finish()
    healed_all = heal and not result.not_healed and \
        len(result.problems) == result.healed + result.fixed_hashes
    bad = (result.problems and not healed_all) or result.source_differences
    code = int(ExitCode.FAILED if bad else ExitCode.OK)
    if as_json:
        print_json({"checked": result.checked, "bytes": result.bytes,
                    "problems": [issue_dict(i) for i in result.problems],
                    "source_differences": [issue_dict(i) for i in result.source_differences],
                    "healed": result.healed, "fixed_hashes": result.fixed_hashes,
                    "not_healed": [issue_dict(i) for i in result.not_healed],
                    "exit_code": code})
        raise typer.Exit(code)
    verdict = "[red]PROBLEMS FOUND[/]" if result.problems else "[green]all copies intact[/]"
    out.print(f"[bold]Verified[/] {plural(result.checked, 'copy', 'copies')}, "
              f"{size(result.bytes)}: {verdict}")
    print_issues(result.problems, "Damaged or missing copies")
    if heal:
        out.print(f"Healed {result.healed:,} copies from the source; put right "
                  f"{result.fixed_hashes:,} catalog hashes.")
        print_issues(result.not_healed, "Not healed")
    elif result.problems:
        out.print("The next backup copies them again where the source still matches "
                  "(or run `twofold verify --heal` now).")
    if against_source:
        if result.source_differences:
            print_issues(result.source_differences, "Differences from the source")
        else:
            out.print("The backup matches the source.")
    raise typer.Exit(code)
