"""`venvstacks completion SHELL`: print the shell completion script (click's) for bash, zsh or fish."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

__all__ = ["COMMANDS", "COMPLETE_VAR", "SHELLS", "completion_script"]

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_VENVSTACKS_COMPLETE"
"""The environment variable click's completion scripts set when they call `venvstacks`."""

_HOW = {
    "bash": 'eval "$(venvstacks completion bash)"      # in ~/.bashrc (bash 4.4 or newer)',
    "zsh": 'eval "$(venvstacks completion zsh)"       # in ~/.zshrc',
    "fish": "venvstacks completion fish > ~/.config/fish/completions/venvstacks.fish",
}


def completion_script(root: click.Command, shell: str) -> str:
    """The completion script for ``shell``, completing ``venvstacks`` command lines."""
    completion_class = get_completion_class(shell)
    if completion_class is None:  # pragma: no cover - click.Choice already refused it
        raise click.BadParameter(f"no completion for {shell!r}")
    return completion_class(root, {}, "venvstacks", COMPLETE_VAR).source()


@click.command(
    epilog="\b\nTo install it:\n" + "\n".join(f"  {how}" for how in _HOW.values()),
)
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    It completes commands, options, choices and paths; load it from your shell's start-up file.
    """
    root = ctx.find_root().command
    click.echo(completion_script(root, shell), nl=False)


COMMANDS = [completion]
