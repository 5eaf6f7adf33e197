"""Usage errors (an unknown flag or verb, a missing argument, a bad value) as one line.

click shows them in four: the usage, "Try 'summon run --help' for help.", a blank line and
"Error: ...". summon says them as it says every other error, in one line naming the verb and
its help, with click's suggestion ("Did you mean --name?") kept:

    summon: error: run: no such option '--nam'. (Did you mean '--name'?) See 'summon run --help'.
"""

from __future__ import annotations

from typing import Any, NoReturn

import click

from summon.cli.output import fail


class VerbGroup(click.Group):
    """A group that gives its verbs' usage errors their context when click leaves it out.

    click's parser raises some (an option missing its value: `summon logs --tail`) and summon's
    own callbacks raise others (`summon rmi` with no image) without one, so the line could not
    say which verb it is about."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            name = ctx.invoked_subcommand
            command = self.get_command(ctx, name) if e.ctx is None and name else None
            if command is not None:
                # A context is only its command and its place; nothing is parsed again.
                e.ctx = click.Context(command, parent=ctx, info_name=name)
                e.cmd = command
            raise


def shows_itself(e: click.UsageError) -> bool:
    """Whether e has a show of its own: NoArgsIsHelpError (click 8.2) prints the verb's help
    for `summon volume` alone, which stays as it is."""
    return type(e).show is not click.UsageError.show


def usage_failed(e: click.UsageError) -> NoReturn:
    """Print e as one `summon: error:` line and exit with its status (2)."""
    fail(usage_line(e), e.exit_code)


def _takes_app_args(ctx: click.Context) -> bool:
    """Whether the verb passes arguments on to the app (run's ARGS after the image)."""
    return any(
        isinstance(p, click.Argument) and p.nargs == -1 and p.name == "args"
        for p in ctx.command.params
    )


def usage_line(e: click.UsageError) -> str:
    message = " ".join(e.format_message().split())  # one line, whatever the message held
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        message = message[0].lower() + message[1:]  # "No such option" reads as summon's own
    ctx = e.ctx
    if ctx is None:
        return message
    path = ctx.command_path
    verb = path.partition(" ")[2]
    if verb:
        message = f"{verb}: {message}"
    if ctx.command.get_help_option(ctx) is None:
        return message
    if not message.endswith((".", "?", "!", ".)", "?)")):  # "(Did you mean --name?)" ends one
        message += "."
    if isinstance(e, click.NoSuchOption) and not e.possibilities and _takes_app_args(ctx):
        # `summon run web --workers 4`: meant for the app, read as summon's own flag
        message += f" An argument for the app goes after --: {path} IMAGE -- {e.option_name}."
    helps = max(ctx.command.get_help_option_names(ctx), key=len)
    return f"{message} See '{path} {helps}'."
