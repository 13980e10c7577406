"""`python -m edgeopt` is the same as the `edgeopt` command; Ctrl-C while importing is 130 too."""

import sys


def run() -> None:
    try:
        from edgeopt.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("edgeopt: interrupted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
