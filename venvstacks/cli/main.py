"""The `venvstacks` command line: argument parsing, logging set-up and exit codes.

Exit codes: 0 success; 1 a stack or user error (one line on stderr, no traceback unless -v;
with `--json` or `--report -`, also one `{"error": ...}` document on stdout unless the command
had already written its document); 2 a usage error; 130 interrupted (Ctrl-C). Commands live in the other `cli/` modules and call library functions; this module only
wires them together and translates errors.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any

import click

from venvstacks import __version__
from venvstacks.cli.state import JSON_STDOUT, CliState
from venvstacks.errors import StackError

__all__ = ["main"]

_LOG_FORMAT = "%(message)s"
_VERBOSITY = [0]  # set by the group callback, read when reporting an error


class _Group(click.Group):
    """Lists commands in the order they were added (the order a user needs them).

    The command modules are imported on first use, and only the one a command lives in, so
    that `--version` stays cheap and `build` does not load what `deploy` or `image` need.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        _register_commands()
        return [c.name for m in _COMMAND_MODULE_ORDER for c in _LOADED[m] if c.name]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _COMMAND_MODULES.get(cmd_name)
        if module is not None:
            _register_module(module)
        found = super().get_command(ctx, cmd_name)
        if found is None:  # a command this table does not know yet: load them all
            _register_commands()
            found = super().get_command(ctx, cmd_name)
        return found


# Where each command lives (cli/<module>.py), and the order `--help` lists the modules in.
_COMMAND_MODULE_ORDER = (
    "init", "show", "build", "status", "publish", "deploy", "image", "runtime", "cache",
    "completion",
)  # fmt: skip
_COMMAND_MODULES = {
    "init": "init",
    "show": "show",
    "graph": "show",
    "lock": "build",
    "build": "build",
    "status": "status",
    "dodo": "status",
    "publish": "publish",
    "local-export": "publish",
    "deploy": "deploy",
    "run": "deploy",
    "verify": "deploy",
    "image": "image",
    "runtime": "runtime",
    "cache": "cache",
    "completion": "completion",
}
_LOADED: dict[str, list[click.Command]] = {}


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    invoke_without_command=False,
    no_args_is_help=True,
)
@click.version_option(
    __version__, "-V", "--version", prog_name="venvstacks", message="%(prog)s: %(version)s"
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More output: -v for progress details, -vv for debugging (and tracebacks).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only print errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Build layered Python environments from a stack spec (venvstacks.toml).

    A stack has runtime layers (a relocatable CPython), framework layers (venvs sharing big
    libraries) and application layers (venvs with a launch module). Every operation is an
    incremental task: only layers whose inputs or lower layers changed are locked and rebuilt.

    \b
    Typical session:
      venvstacks show venvstacks.toml        the layers and their sys.path order
      venvstacks lock venvstacks.toml        lock every layer (requirements/<layer>/)
      venvstacks build venvstacks.toml       build environments in _build/
      venvstacks publish venvstacks.toml     archives and metadata in _artifacts/
      venvstacks deploy _artifacts DIR       unpack, verify and set up the layers in DIR

    SPEC_PATH may be left out: venvstacks.toml (or .yaml, .yml) in the current folder is used.
    The options below may also follow the command name (venvstacks build -v).
    """
    ctx.obj = CliState(verbose=verbose, quiet=quiet)
    _VERBOSITY[0] = verbose
    _configure_logging(verbose, quiet)


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.ERROR
        if quiet
        else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    )
    from venvstacks.cli.progress import TaskLineHandler

    logger = logging.getLogger("venvstacks")
    logger.handlers.clear()
    handler = TaskLineHandler(sys.stderr, prefix_tasks=level < logging.WARNING)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def _late_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    """`-v` given after the command name: the same as before it."""
    if value:
        state = ctx.find_root().obj
        if isinstance(state, CliState):
            state.verbose += value
            _VERBOSITY[0] = state.verbose
            _configure_logging(state.verbose, state.quiet)


def _late_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """`-q` given after the command name: the same as before it."""
    if value:
        state = ctx.find_root().obj
        if isinstance(state, CliState):
            state.quiet = True
            _configure_logging(state.verbose, state.quiet)


def _late_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"venvstacks: {__version__}")
        ctx.exit()


def _first_paragraph(text: str | None) -> str | None:
    if not text:
        return None
    paragraph = inspect.cleandoc(text).split("\n\n", 1)[0]
    return " ".join(paragraph.replace("\b", "").split()) or None


def _prepare_command(command: click.Command) -> None:
    """Whole first sentences as summaries in `--help` (click cuts its own mid-sentence), and
    the group's own options accepted after the command name too (`venvstacks build -v ...`)."""
    if command.short_help is None:
        command.short_help = _first_paragraph(command.help)
    taken = {opt for param in command.params for opt in param.opts}
    extra = [
        click.Option(["-v", "--verbose"], count=True, callback=_late_verbose),
        click.Option(["-q", "--quiet"], is_flag=True, callback=_late_quiet),
        click.Option(["-V", "--version"], is_flag=True, is_eager=True, callback=_late_version),
    ]
    for option in extra:
        if not taken & set(option.opts):
            option.expose_value = False
            option.hidden = True
            command.params.append(option)
    for param in command.params:
        if {"--json", "--report"} & set(param.opts):
            param.callback = _noting_json(param.callback)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _prepare_command(sub)


def _noting_json(callback: Any) -> Any:
    """A `--json`/`--report` callback that also notes when stdout is kept for one document."""

    def noted(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is True or value == "-":
            JSON_STDOUT.wanted = True
        return callback(ctx, param, value) if callback is not None else value

    return noted


def _register_module(name: str) -> None:
    """Import `venvstacks.cli.<name>` and add its commands (once)."""
    if name in _LOADED:
        return
    import importlib

    module = importlib.import_module(f"venvstacks.cli.{name}")
    commands = list(getattr(module, "COMMANDS", None) or [getattr(module, name)])
    for command in commands:
        cli.add_command(command)
        _prepare_command(command)
    _LOADED[name] = commands


def _register_commands() -> None:
    for name in _COMMAND_MODULE_ORDER:
        _register_module(name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of exiting (tests call this directly).

    Ctrl-C kills every subprocess at once, prints `interrupted` and gives 130; run as the
    `venvstacks` command (no `argv`), the process then ends at once, without waiting for
    worker threads (a killed build is repaired by the next one).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    _VERBOSITY[0] = 0
    JSON_STDOUT.wanted = JSON_STDOUT.written = False
    completing = any(k.startswith("_VENVSTACKS") and k.endswith("_COMPLETE") for k in os.environ)
    if not args and not completing:  # as 0.8.0: the help on stdout, exit status 2
        with click.Context(cli, info_name="venvstacks") as ctx:
            click.echo(ctx.get_help())
        return 2
    if "venvstacks.proc" in sys.modules:  # an earlier command in this process was interrupted
        sys.modules["venvstacks.proc"].allow_subprocesses()
    previous = _catch_interrupts()
    early = _early_display(args)
    try:
        if early is not None:
            from venvstacks.cli.progress import open_early

            open_early(early)
        code = _run(args)
    finally:
        _close_live_display()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if code == INTERRUPTED and argv is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


INTERRUPTED = 130

# Commands that run tasks and show the live display on a terminal; options that turn it off.
_LIVE_COMMANDS = frozenset({"build", "lock", "publish", "deploy"})
_NO_LIVE_OPTIONS = frozenset(
    {"--quiet", "--verbose", "--json", "--help", "--version", "--show", "--show-only"}
)


def _early_display(args: Sequence[str]) -> str | None:
    """The command whose live display should open at once (something on screen within a
    fraction of a second, before the stack is read), or None."""
    try:
        if not sys.stderr.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    command = next((a for a in args if not a.startswith("-")), None)
    if command not in _LIVE_COMMANDS:
        return None
    for arg in args:
        if arg == "--":
            break
        short = arg.startswith("-") and not arg.startswith("--")
        if arg.split("=", 1)[0] in _NO_LIVE_OPTIONS or (short and set(arg[1:]) & set("vqhV")):
            return None
    return command


def _subprocesses() -> Any:
    """venvstacks.proc, imported only when needed (`--version` and `--help` stay cheap)."""
    from venvstacks import proc

    return proc


def _on_interrupt(signum: int, frame: object) -> None:
    """First Ctrl-C: stop the subprocesses now, then unwind; any further Ctrl-C is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    started = sys.modules.get("venvstacks.proc")  # no import inside a signal handler
    if started is not None:
        started.stop_subprocesses()
    raise KeyboardInterrupt


def _catch_interrupts() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, _on_interrupt)


def _interrupted() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _subprocesses().stop_subprocesses()
    click.echo("interrupted", err=True)
    return INTERRUPTED


def _run(args: list[str]) -> int:
    try:
        result = cli.main(args=args, prog_name="venvstacks", standalone_mode=False)
    except BaseException as exc:
        # click writes its messages past any live display: close it first.
        _close_live_display()
        code = _exit_code(exc)
        if code is None:
            raise
        return code
    return result if isinstance(result, int) else 0


def _close_live_display() -> None:
    if "venvstacks.cli.progress" in sys.modules:
        sys.modules["venvstacks.cli.progress"].close_early()


def _exit_code(exc: BaseException) -> int | None:
    """The exit code for an exception, its message shown; None when it is not ours to handle."""
    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    if isinstance(exc, click.UsageError):
        exc.show()
        return 2
    if isinstance(exc, click.ClickException):
        exc.show()
        return exc.exit_code
    if isinstance(exc, click.Abort):
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            return _interrupted()
        click.echo("aborted", err=True)
        return 1
    if isinstance(exc, KeyboardInterrupt):
        return _interrupted()
    if isinstance(exc, StackError):
        if _VERBOSITY[0] >= 2:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        if JSON_STDOUT.wanted and not JSON_STDOUT.written:
            click.echo(error_document(exc), nl=False)
        return 1
    return None


def error_document(exc: StackError) -> str:
    """A user error as the one JSON document of a `--json` command: ``{"error": {"type",
    "message", ...}}``, with the error's own facts (a `SelectionError`'s names) beside them."""
    import json

    details = getattr(exc, "details", None)
    error = {**(details if isinstance(details, dict) else {}), "type": type(exc).__name__}
    error["message"] = str(exc)
    return json.dumps({"error": error}, indent=2, sort_keys=True) + "\n"
