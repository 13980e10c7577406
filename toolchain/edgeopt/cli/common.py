"""What every command shares: one stderr line and an exit code per error, Ctrl-C as 130, options."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

from edgeopt.errors import missing_package, user_line

EXIT_GATE_FAILED = 1
EXIT_INTERRUPTED = 130


def quiet() -> bool:
    """CI=true or no terminal: plain output, no progress animation."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or not sys.stderr.isatty()


def emit_json(document: dict) -> None:
    click.echo(json.dumps(document, indent=2, default=str))


def handle_errors(command):
    """Turn any exception into one stderr line and its exit code (errors.user_line); the whole
    chain with --debug. Ctrl-C is 130 whatever the library was doing."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return command(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except BaseException as error:  # noqa: BLE001 - every escape gets one line and a code
            if isinstance(error, SystemExit):
                raise
            if debug and not isinstance(error, KeyboardInterrupt):
                raise
            if (missing := missing_package(error)) is not None:
                click.echo(f"edgeopt: error: {missing}", err=True)
                sys.exit(missing.exit_code)
            line, code = user_line(error)
            if isinstance(error, KeyboardInterrupt) and debug:
                import traceback

                traceback.print_exc()
            click.echo(line, err=True)
            sys.exit(code)

    return wrapper


targets_dir_option = click.option(
    "--targets-dir", type=click.Path(path_type=Path), envvar=None,
    help="Extra folder of target profiles (also: EDGEOPT_TARGETS).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


def _numbers(kind, text: str | None):
    if text is None:
        return None
    try:
        return tuple(kind(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"'{text}': expected numbers separated by ','") from None


def reader_options(command):
    """--size/--mean/--std/--layout for image data, folded into one ReaderOptions (`reader`)."""

    @functools.wraps(command)
    def wrapper(*args, size=None, mean=None, std=None, layout=None, **kwargs):
        from edgeopt.data import ReaderOptions

        dims = _numbers(int, size)
        if dims is not None and len(dims) not in (1, 2):
            raise click.BadParameter(f"'{size}': expected HxW or one number", param_hint="--size")
        if dims is not None and not all(1 <= d <= 8192 for d in dims):
            raise click.BadParameter(f"'{size}': each side must be 1..8192 pixels", param_hint="--size")
        reader = ReaderOptions(size=(dims * 2)[:2] if dims else None, mean=_numbers(float, mean),
                               std=_numbers(float, std), layout=layout)
        return command(*args, reader=reader, **kwargs)

    for option in reversed([
        click.option("--size", help="Images: resize to HxW (e.g. 224x224) [default: model metadata or input shape]."),
        click.option("--mean", help="Images: per-channel mean after scaling to [0, 1], e.g. 0.485,0.456,0.406."),
        click.option("--std", help="Images: per-channel std, e.g. 0.229,0.224,0.225."),
        click.option("--layout", type=click.Choice(["NCHW", "NHWC"], case_sensitive=False), help="Images: tensor layout."),
    ]):
        wrapper = option(wrapper)
    return wrapper


def prune_options(command):
    """--prune, --prune-importance, --prune-ignore, --finetune-data/-steps, folded into `prune_settings`."""

    @functools.wraps(command)
    def wrapper(*args, prune=None, prune_importance="magnitude", prune_ignore=(), finetune_data=None,
                finetune_steps=None, **kwargs):
        settings = {"prune": prune, "prune_importance": prune_importance, "prune_ignore": tuple(prune_ignore),
                    "finetune_data": finetune_data, "finetune_steps": finetune_steps or 0}
        return command(*args, prune_settings=settings, **kwargs)

    for option in reversed([
        click.option("--prune", help="Channel ratio to remove (0.5), '2:4' sparsity (Ampere+ targets), or 'none' "
                                     "[default: the target's build.prune]."),
        click.option("--prune-importance", type=click.Choice(["magnitude", "bn", "taylor"]), default="magnitude",
                     show_default=True, help="How channels are ranked (taylor uses the fine-tune or calibration data)."),
        click.option("--prune-ignore", multiple=True, help="Module name pruning leaves untouched (repeatable)."),
        click.option("--finetune-data", type=click.Path(path_type=Path),
                     help="Data for a recovery fine-tune after pruning (distillation from the unpruned model; labels optional)."),
        click.option("--finetune-steps", type=click.IntRange(min=1), help="Recovery steps [default: 300 with --finetune-data]."),
    ]):
        wrapper = option(wrapper)
    return wrapper


class Group(click.Group):
    """Ctrl-C at any moment, including while click parses, is exit 130 with one line (click's own
    "Aborted!" is exit 1, our gate-failed code)."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)  # without standalone mode, ctx.exit(n) returns n
        except click.exceptions.Exit as done:
            sys.exit(done.exit_code)
        except click.UsageError as error:
            sys.exit(usage_line(error))
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except (KeyboardInterrupt, click.exceptions.Abort, EOFError):
            interrupted()
        sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


def usage_line(error: click.UsageError) -> int:
    """Click's usage error as ONE stderr line (not Usage / Try / Error), `--help` as the hint."""
    ctx = error.ctx
    where = ctx.command_path if ctx is not None else "edgeopt"
    message = " ".join(error.format_message().split())
    click.echo(f"edgeopt: error: {message} (see {where} --help)", err=True)
    return error.exit_code


def interrupted() -> None:
    try:
        sys.stderr.write("edgeopt: interrupted\n")
        sys.stderr.flush()
    finally:
        sys.exit(EXIT_INTERRUPTED)

