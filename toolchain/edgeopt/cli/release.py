"""`edgeopt package|verify|keygen|release|matrix`: deployable bundles and multi-target releases."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgeopt.cli.common import EXIT_GATE_FAILED, emit_json, handle_errors, json_option


@click.command("package")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("dist"), show_default=True,
              help="Folder the .tar.gz is written to.")
@click.option("--version", "version", help="Release version, part of the package name.")
@click.option("--layout", type=click.Choice(["bundle", "triton"]), default="bundle", show_default=True,
              help="bundle: the device package; triton: a Triton Inference Server model repository.")
@click.option("--eval", "eval_", type=click.Path(path_type=Path),
              help="GPU targets: evaluation data shipped for on-device validation [default: the build's].")
@click.option("--sign", "sign", type=click.Path(path_type=Path),
              help="Sign SHA256SUMS with this ECDSA P-256 private key (PKCS#8 PEM, mode 0600; edgeopt keygen).")
@json_option
@handle_errors
def package_command(build_dir, out, version, layout, eval_, sign, as_json):
    """A reproducible .tar.gz of BUILD_DIR for deployment (with SHA256SUMS, provenance, SBOM; signed with --sign)."""
    from edgeopt.package.bundle import package

    command = ["edgeopt", "package", str(build_dir), "--out", str(out), "--layout", layout]  # as parsed: provenance
    command += [*(["--version", version] if version else []), *(["--eval", str(eval_)] if eval_ else []),
                *(["--sign", "KEY"] if sign else [])]  # the key's id is recorded, never its path
    result = package(build_dir, out, version=version, layout=layout, eval_path=eval_, sign=sign, command=command)
    emit_json(result.model_dump(mode="json")) if as_json else click.echo(f"{result.path}  ({result.bytes:,} bytes, sha256 {result.sha256})")


@click.command("verify")
@click.argument("package_path", metavar="PACKAGE", type=click.Path(path_type=Path))
@click.option("--device", is_flag=True, help="Also require this host (TensorRT and GPU, or CPU) to be the target's (exit 3 without TensorRT).")
@click.option("--key", type=click.Path(path_type=Path),
              help="Public key (PEM) the package must be signed with; an unsigned package then fails.")
@click.option("--show", is_flag=True, help="Also print the provenance (with --json: the raw in-toto statement).")
@json_option
@handle_errors
def verify_command(package_path, device, key, show, as_json):
    """Check a package's signature, files, schemas and (on a device) TensorRT and GPU; exit 1 naming what differs."""
    from edgeopt.package.provenance import table
    from edgeopt.package.verify import verify

    result = verify(package_path, device=device, key=key)
    lines = [f"{result.package}: {result.files} files, signature {result.signature}, " + ("ok" if result.ok else "FAILED")]
    lines += [f"  {p}" for p in result.problems]
    lines += [f"  device: {result.device.get('note') or result.device}"] if result.device else []
    if show:
        lines += table(result.provenance) if result.provenance else ["  no provenance in this package"]
    document = result.model_dump(mode="json", exclude=set() if show else {"provenance"}) | {"ok": result.ok}
    emit_json(document) if as_json else click.echo("\n".join(lines))
    sys.exit(0 if result.ok else EXIT_GATE_FAILED)


@click.command("keygen")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Folder for the key pair (created).")
@json_option
@handle_errors
def keygen_command(out, as_json):
    """A new ECDSA P-256 signing key pair: the private key (mode 0600) and the public key for devices."""
    from edgeopt.package.signing import keygen

    pair = keygen(out)
    emit_json(pair.model_dump(mode="json")) if as_json else click.echo(
        f"private key: {pair.private}  (keep it secret; edgeopt package --sign {pair.private})\n"
        f"public key:  {pair.public}  (for edgeopt verify --key, and /etc/edgeopt/release.pub on devices)")


@click.command("release")
@click.option("--project", "-p", type=click.Path(path_type=Path), default=Path("edgeopt.yaml"), show_default=True)
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="Builds run in parallel [default: the CPU count].")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("dist"), show_default=True,
              help="Folder for packages, builds and the summary.")
@click.option("--version", "version", help="Release version, part of every package name.")
@click.option("--model", "models", multiple=True, help="Only this model (repeatable; CI matrix jobs).")
@click.option("--target", "-t", "targets_", multiple=True, help="Only this target (repeatable; CI matrix jobs).")
@click.option("--sign", "sign", type=click.Path(path_type=Path), help="Sign every package with this P-256 private key (see package --sign).")
@json_option
@handle_errors
def release_command(project, jobs, out, version, models, targets_, sign, as_json):
    """Build, validate and package every (model, target) pair of the project file; exit 1 if any gate failed."""
    from edgeopt.release import run_release

    result = run_release(project, out, jobs=jobs, version=version, models=models, targets=targets_, sign=sign)
    emit_json(result.model_dump(mode="json")) if as_json else click.echo(f"{result.markdown}\nsummary: {result.summary_path}")
    sys.exit(result.exit_code)


@click.command("matrix")
@click.option("--project", "-p", type=click.Path(path_type=Path), default=Path("edgeopt.yaml"), show_default=True)
@click.option("--by", type=click.Choice(["target", "pair"]), default="target", show_default=True,
              help="target: one CI job per target (runners with that device); pair: one per (model, target).")
@handle_errors
def matrix_command(project, by):
    """The project's pairs as JSON for a CI matrix (GitHub Actions: fromJSON)."""
    from edgeopt.project import load_project

    click.echo(json.dumps(load_project(project).matrix(by), separators=(",", ":")))
