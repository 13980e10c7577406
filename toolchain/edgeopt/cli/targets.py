"""`edgeopt targets list|show`: the device profiles."""

from __future__ import annotations

import click

from edgeopt.cli.common import emit_json, handle_errors, json_option, targets_dir_option


@click.group()
def targets() -> None:
    """List and inspect target device profiles."""


@targets.command("list")
@targets_dir_option
@json_option
@handle_errors
def targets_list(targets_dir, as_json):
    """All known target profiles (shipped and user)."""
    from edgeopt import targets as target_profiles

    profiles = target_profiles.load_all(targets_dir)
    host = target_profiles.host_profile(profiles).name
    rows = [{"name": p.name, "backend": p.backend, "product": p.device.product, "aliases": p.aliases,
             "tensorrt": p.software.tensorrt, "host": p.name == host, "source": p.source} for p in profiles.values()]
    if as_json:
        emit_json({"schema_version": 1, "targets": rows, "host": host})
        return
    for row in rows:
        extras = ", ".join(filter(None, [f"alias {', '.join(row['aliases'])}" if row["aliases"] else "",
                                         f"TensorRT {row['tensorrt']}" if row["tensorrt"] else "",
                                         "this host (cpu)" if row["host"] else ""]))
        click.echo(f"{row['name']:<24} {row['backend']:<12} {row['product']}" + (f"  [{extras}]" if extras else ""))


@targets.command("show")
@click.argument("name")
@targets_dir_option
@json_option
@handle_errors
def targets_show(name, targets_dir, as_json):
    """One target profile, after alias and host resolution."""
    import yaml

    from edgeopt import targets as target_profiles

    profile = target_profiles.resolve(name, targets_dir)
    body = profile.model_dump(mode="json")
    if as_json:
        emit_json({"schema_version": 1, **body})
    else:
        click.echo(yaml.safe_dump(body, sort_keys=False).rstrip())
