"""`edgeopt cache info|clear`: the stage cache."""

from __future__ import annotations

from pathlib import Path

import click

from edgeopt.cli.common import emit_json, handle_errors, json_option


@click.group()
def cache() -> None:
    """Inspect and trim the stage cache."""


@cache.command("info")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Stage cache folder [default: $EDGEOPT_CACHE or ~/.cache/edgeopt].")
@json_option
@handle_errors
def cache_info(cache_dir, as_json):
    """Entries and size per stage."""
    from edgeopt.cache import cache_info as info

    document = info(cache_dir)
    if as_json:
        emit_json(document)
        return
    click.echo(f"{document['path']}: {document['entries']} entries, {document['bytes'] / 1e6:.1f} MB")
    for stage, numbers in sorted(document["stages"].items()):
        click.echo(f"  {stage:<12} {numbers['entries']:>5} entries  {numbers['bytes'] / 1e6:>9.1f} MB")


def _bytes(text: str | None) -> int | None:
    if text is None:
        return None
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number, unit = text.strip().upper().rstrip("B"), ""
    if number and number[-1] in units:
        number, unit = number[:-1], number[-1]
    try:
        return int(float(number) * units[unit])
    except ValueError:
        raise click.BadParameter(f"'{text}': expected a size such as 500M or 2G", param_hint="--max-size") from None


@cache.command("clear")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Stage cache folder [default: $EDGEOPT_CACHE or ~/.cache/edgeopt].")
@click.option("--max-size", help="Keep the newest entries up to this size (500M, 2G); without it, remove all.")
@json_option
@handle_errors
def cache_clear(cache_dir, max_size, as_json):
    """Remove cache entries, oldest first."""
    from edgeopt.cache import cache_clear as clear

    document = clear(cache_dir, _bytes(max_size))
    if as_json:
        emit_json(document)
    else:
        click.echo(f"{document['path']}: removed {document['removed']} entries ({document['freed_bytes'] / 1e6:.1f} MB), "
                   f"{document['bytes'] / 1e6:.1f} MB left")
