"""Which threads make helper processes start through a fork server (fsinfo.children)."""

from __future__ import annotations

import sys
import threading

import pytest

from twofold.fsinfo.children import child_context, unsafe_threads


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")
@pytest.mark.parametrize(("name", "method"), [("twofold-progress", "fork"),
                                              ("some-client-pool", "forkserver")])
def test_only_unknown_threads_need_a_fork_server(name: str, method: str) -> None:
    before = unsafe_threads()
    if before:
        pytest.skip(f"{before} other threads already run in this test process")
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name=name, daemon=True)
    t.start()
    try:
        assert child_context().get_start_method() == method
    finally:
        stop.set()
        t.join()
    assert child_context().get_start_method() == "fork"
