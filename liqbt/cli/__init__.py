"""The ``liqbt`` command line: parses, loads and delegates; no margin logic lives here."""

from __future__ import annotations

import importlib
import sys

import click

# sub-command name -> "module:attribute"; each module owns one click command or group, so the
# CLI stays a thin shell and each feature area keeps its own parsing.
_COMMANDS = {
    "calc": "liqbt.cli.calc:calc",
    "data": "liqbt.cli.data:data",
    "run": "liqbt.cli.run:run",
    "compare": "liqbt.cli.run:compare",
    "sweep": "liqbt.cli.run:sweep",
    "max-leverage": "liqbt.cli.study:max_leverage",
    "survival": "liqbt.cli.study:survival",
    "optimize": "liqbt.cli.study:optimize",
}


#: ANSI "show cursor": progress bars hide the cursor and only show it again when they finish.
SHOW_CURSOR = "\x1b[?25h"


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


class _LazyGroup(click.Group):
    """Imports a sub-command's module only when it is used (fast ``--help``, light ``calc``).

    Ctrl-C anywhere ends with the terminal cursor visible again (a progress bar interrupted
    mid-run would leave it hidden), the line ``interrupted`` and exit code 130.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, click.Abort):
            if _stderr_is_tty():
                sys.stderr.write(SHOW_CURSOR)
                sys.stderr.flush()
            click.echo("\ninterrupted", err=True)
            ctx.exit(130)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in _COMMANDS if self._load(name) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # feature not built yet
                return None
            raise
        return getattr(module, attr, None)


@click.group(cls=_LazyGroup)
@click.version_option(package_name="liqbt")
def main() -> None:
    """liqbt: leveraged crypto-futures backtests that liquidate when the exchange would."""
