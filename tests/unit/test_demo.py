"""`make demo` (scripts/demo.py) runs to its end, and runs again after itself: what twofold
remembers of drives goes into the demo's own folder, not the user's state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def test_demo_runs_twice(tmp_path: Path) -> None:
    out, state = tmp_path / "demo-out", tmp_path / "user-state"
    env = {**os.environ, "TWOFOLD_DEMO_OUT": str(out), "TWOFOLD_STATE_DIR": str(state)}
    for turn in (1, 2):
        r = subprocess.run([sys.executable, str(DEMO)], env=env, capture_output=True,
                           text=True, check=False)
        assert r.returncode == 0, f"turn {turn}:\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}"
        assert "identical to the files as they were" in r.stdout
    assert not state.exists()  # the user's state was not touched
    assert (out / "state").is_dir()
