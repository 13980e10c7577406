"""`python -m edgeopt` is the same as the `edgeopt` command; Ctrl-C while importing is 130 too."""

import os
import signal
import sys

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM
_terminated = []


def _exit_now(code: int) -> None:
    """Exit with `code` without interpreter shutdown. CPython kills itself with SIGINT at exit,
    whatever sys.exit said, once a KeyboardInterrupt has passed through exec() of a string
    (dataclasses and torch do that while importing); the build's own cleanup already ran."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (CI timeouts, `docker stop`, `timeout`) unwinds like Ctrl-C, so staging folders
    and cache work folders are removed before exit; the exit code still says SIGTERM (143)."""
    _terminated.append(signum)
    raise KeyboardInterrupt


def run() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        from edgeopt.cli import main

        main()
    except KeyboardInterrupt:  # while importing, before the command's own handler
        sys.stderr.write("edgeopt: interrupted\n")
        _exit_now(EXIT_TERMINATED if _terminated else EXIT_INTERRUPTED)
    except SystemExit as done:
        if done.code == EXIT_INTERRUPTED:
            _exit_now(EXIT_TERMINATED if _terminated else EXIT_INTERRUPTED)
        # The command has finished: a late Ctrl-C during shutdown must not turn its result into a kill.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise


if __name__ == "__main__":
    run()
