"""The `lok` command's entry point (and `python -m lokfile`).

`lok --version` / `lok -V` answers here, before click and the command table
load: it is what scripts and agents call to see whether lok is installed.
Everything else goes to `lokfile.cli.main`.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from lokfile import __version__

        sys.stdout.write(f"lok {__version__}\n")
        raise SystemExit(0)
    from lokfile.cli import main as run_cli

    run_cli()


if __name__ == "__main__":
    main()
