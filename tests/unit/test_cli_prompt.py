"""The apply prompt and Ctrl-C: SIGINT may be handed to any thread of the CLI (the apply
lock's lease thread is running while it asks), and the prompt must end either way."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import signal, threading, time
    from plexica_gitops.cli import _answer

    def elsewhere():
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # not the main thread

    threading.Thread(target=elsewhere, daemon=True).start()
    try:
        _answer("Enter a value: ")
    except KeyboardInterrupt:
        print("interrupted")
    """
)


def test_ctrl_c_delivered_to_another_thread_ends_the_prompt() -> None:
    """input() would go on waiting in read() (the CI hang of the ctrl-c prompt test)."""
    typed, keyboard = os.pipe()  # held open, and nothing is ever typed
    try:
        with subprocess.Popen(
            [sys.executable, "-c", SCRIPT], stdin=typed, stdout=subprocess.PIPE, text=True
        ) as child:
            try:
                out, _ = child.communicate(timeout=20)
            finally:
                child.kill()
    finally:
        os.close(typed)
        os.close(keyboard)
    assert out.endswith("interrupted\n"), out


def test_a_typed_line_is_the_answer() -> None:
    script = "from plexica_gitops.cli import _answer; print(repr(_answer('? ')))"
    done = subprocess.run(
        [sys.executable, "-c", script], input="yes\n", capture_output=True, text=True, timeout=20
    )
    assert done.stdout == "? 'yes'\n", done.stdout + done.stderr
