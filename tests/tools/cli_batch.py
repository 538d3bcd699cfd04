"""Run `venvstacks.cli.main.main` on many argument lists in one process, for fast CLI sweeps in tests.

Usage: python tests/tools/cli_batch.py < argvs.json   (a JSON list of argument lists)
Prints a JSON list of {"argv", "code", "stdout", "stderr"}; "code" is null when main() raised
instead of returning an exit code (the traceback is then in "stderr").

Each call goes through the same `main()` the `venvstacks` script calls, so exit codes and error
lines are those of the real command; only the interpreter start-up is shared.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback


def main() -> int:
    from venvstacks.cli.main import main as cli_main

    results = []
    for argv in json.load(sys.stdin):
        out, err = io.StringIO(), io.StringIO()
        code: int | None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli_main(argv)
            except BaseException:  # noqa: BLE001 - reported, not hidden
                code = None
                err.write(traceback.format_exc())
        results.append(
            {"argv": argv, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
        )
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
