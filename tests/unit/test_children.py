"""Which threads make helper processes start through a fork server (fsinfo.children)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import threading
import time
from twofold.fsinfo.children import child_context, unsafe_threads
assert unsafe_threads() == 0, unsafe_threads()
stop = threading.Event()
t = threading.Thread(target=stop.wait, name={name!r}, daemon=True)
t.start()
print(child_context().get_start_method())
stop.set()
t.join()
print(child_context().get_start_method())  # at once: the kernel may still list it
for _ in range(200):  # the kernel lists a joined thread for a moment longer
    if unsafe_threads() == 0:
        break
    time.sleep(0.01)
print(child_context().get_start_method())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")
@pytest.mark.parametrize(("name", "method"), [("twofold-progress", "fork"),
                                              ("twofold-read-ahead", "fork"),
                                              ("some-client-pool", "forkserver")])
def test_only_unknown_threads_need_a_fork_server(name: str, method: str) -> None:
    """In a fresh interpreter (a test process may hold threads of its own)."""
    got = subprocess.run([sys.executable, "-c", PROBE.format(name=name)], text=True,
                         capture_output=True, check=True)
    during, at_once, later = got.stdout.split()
    assert (during, later) == (method, "fork"), got.stdout + got.stderr
    if method == "fork":  # a safe thread just ended does not count, though still listed
        assert at_once == "fork", got.stdout + got.stderr
