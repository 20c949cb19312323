"""The rescue console's start screen: `twofold rescue guide --boot` without the CLI's
option parser and Rich, which cost seconds of Python start under emulation."""

from __future__ import annotations


def main() -> int:
    """Run the guided restore as the rescue system's start screen; its exit code."""
    from twofold.cli.rescue_guide import make_guide
    from twofold.core.errors import TwofoldError

    try:
        return make_guide(boot=True).run()
    except TwofoldError as e:
        print(f"error: {e.message}" + (f"\n  {e.hint}" if e.hint else ""), flush=True)
        return int(e.exit_code)
    except KeyboardInterrupt:
        return 130
