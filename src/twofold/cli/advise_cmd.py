"""`twofold advise [SET]`: how often each top-level folder changes, and how often to back
it up."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from twofold.cli.common import config_of, handles_errors, out, print_json
from twofold.core.errors import UsageError
from twofold.core.text import plural
from twofold.jobs.advise import advise_set
from twofold.jobs.drives import resolve_target


@handles_errors
def advise_command(
    ctx: typer.Context,
    set_name: Annotated[str | None, typer.Argument(
        metavar="SET", help="Set to advise on (default: every set).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Read the run history and recommend daily, weekly or monthly per folder."""
    cfg = config_of(ctx)
    names = [set_name] if set_name else list(cfg.sets)
    result = {}
    for name in names:
        conf = cfg.sets.get(name)
        if conf is None or conf.target is None:
            raise UsageError(f"no set named {name!r} with a target in {cfg.path}",
                             f"sets: {', '.join(cfg.sets) or 'none'}")
        result[name] = (conf, advise_set(resolve_target(conf.target), name))
    if as_json:
        print_json({n: {"schedule": c.schedule.text if c.schedule else None,
                        "folders": [vars(a) for a in advice]}
                    for n, (c, advice) in result.items()})
        return
    for name, (conf, advice) in result.items():
        now = conf.schedule.text if conf.schedule else "no schedule"
        out.print(f"[bold]set {name}[/] (now: {now})")
        if not advice:
            out.print("  no complete run yet")
            continue
        table = Table("folder", "changed in", "days with changes", "about every",
                      "recommend", "note", box=None, header_style="bold")
        for a in advice:
            every = f"{a.every_days:.1f} days" if a.every_days is not None else "no change"
            table.add_row(a.folder, f"{a.runs_changed} of {plural(a.runs, 'run')}",
                          str(a.days_changed), every, f"[bold]{a.recommend}[/]", a.note)
        out.print(table)
