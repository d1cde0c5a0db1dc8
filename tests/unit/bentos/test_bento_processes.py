"""A Bento's processes as ``status`` sees them: its tree and its resident memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from bentogate.bentos import pid_alive, process_tree, resident_bytes

HOLD_MB = 64  # the grandchild holds this much more than an idle interpreter


def test_the_memory_of_a_process_tree_counts_its_children() -> None:
    # A child that starts a grandchild; the grandchild fills HOLD_MB, then names itself.
    grandchild = (
        f"import os; b = bytearray({HOLD_MB} * 2**20); b[::4096] = b'x' * len(b[::4096]); "
        "print(os.getpid(), flush=True); input()"
    )
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}])"
    with subprocess.Popen(
        [sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    ) as parent:  # fmt: skip
        try:
            assert parent.stdout is not None
            holder = int(parent.stdout.readline())
            assert process_tree(parent.pid) == [parent.pid, holder]
            sizes = resident_bytes([parent.pid, holder])
            whole, alone = sizes[parent.pid], sizes[holder]
            assert alone is not None and alone > HOLD_MB * 2**20
            assert whole is not None and whole > alone  # the child's own interpreter on top
        finally:
            os.killpg(parent.pid, signal.SIGKILL)
    assert not pid_alive(parent.pid)
    assert resident_bytes([parent.pid]) == {parent.pid: None}
