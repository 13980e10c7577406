"""Signed packages (issue 21, item 1) on the real jetson build of the bundled example: a signed
package verifies with its public key, in `edgeopt verify --key` and in run_on_device.sh with this
host's OpenSSL command line; unsigned, other-key and tampered packages are refused, exit 1, with
the reason; the private key goes nowhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import run_cli
from helpers.packages import extract
from helpers.cli_lines import assert_one_line, run

from edgeopt.package.bundle import checksums_text, package
from edgeopt.package.signing import keygen


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return keygen(tmp_path_factory.mktemp("keys") / "release"), keygen(tmp_path_factory.mktemp("keys") / "other")


@pytest.fixture(scope="module")
def signed(jetson_build, keys, tmp_path_factory) -> Path:
    return package(Path(jetson_build["build_dir"]), tmp_path_factory.mktemp("signed"), sign=keys[0].private).path


@pytest.fixture(scope="module")
def unsigned(jetson_build, tmp_path_factory) -> Path:
    return package(Path(jetson_build["build_dir"]), tmp_path_factory.mktemp("unsigned")).path


def _flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 1
    path.write_bytes(bytes(data))


def _resum(root: Path) -> None:
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file() and p.name not in ("SHA256SUMS", "SHA256SUMS.sig")}
    (root / "SHA256SUMS").write_text(checksums_text(files))


def _file(root: Path) -> str:
    _flip(root / "model.int8.onnx")
    return "model.int8.onnx: changed"


def _sums(root: Path) -> str:  # a forger changes a file and lists its new hash
    _flip(root / "model.int8.onnx")
    _resum(root)
    return "SHA256SUMS.sig: does not verify"


def _signature(root: Path) -> str:
    _flip(root / "SHA256SUMS.sig", 0.9)  # inside the DER integer s: still a well-formed signature
    return "SHA256SUMS.sig: does not verify"


def _provenance(root: Path) -> str:  # claim other calibration data, checksums redone
    statement = json.loads((root / "provenance.json").read_text())
    for dependency in statement["predicate"]["buildDefinition"]["resolvedDependencies"]:
        if dependency["name"] == "calibration data":
            dependency["digest"]["sha256"] = "0" * 64
    (root / "provenance.json").write_text(json.dumps(statement))
    _resum(root)
    return "SHA256SUMS.sig: does not verify"


def _removed_signature(root: Path) -> str:
    (root / "SHA256SUMS.sig").unlink()
    return "SHA256SUMS.sig: unsigned package"


def test_a_signed_package_verifies_with_its_key_and_is_reproducible(signed, keys, jetson_build, tmp_path):
    result = run_cli("verify", str(signed), "--key", str(keys[0].public), "--json")
    assert result.exit_code == 0, result.stdout
    document = json.loads(result.stdout)
    assert document["ok"] and document["signature"] == "verified" and document["problems"] == []
    info = json.loads(tarfile.open(signed).extractfile(f"{signed.name[:-7]}/package.json").read())
    assert "SHA256SUMS.sig" in {f["path"] for f in info["files"]} and len(info["signing_key"]) == 64
    again = package(Path(jetson_build["build_dir"]), tmp_path, sign=keys[0].private).path
    assert again.read_bytes() == signed.read_bytes()  # RFC 6979: one key, one build, one package
    assert run_cli("verify", str(signed)).stdout.startswith(f"{signed}: 19 files, signature not checked, ok")


@pytest.mark.parametrize("case", ["unsigned", "other key", _file, _sums, _signature, _provenance, _removed_signature],
                         ids=lambda c: c if isinstance(c, str) else c.__name__.strip("_"))
def test_every_untrusted_package_is_refused_with_the_reason(case, signed, unsigned, keys, tmp_path):
    key = keys[1].public if case == "other key" else keys[0].public
    if isinstance(case, str):
        target, expected = (unsigned, "unsigned package") if case == "unsigned" else (signed, "signed by another key")
    else:
        target = extract(signed, tmp_path / "x")
        expected = case(target)
    result = run_cli("verify", str(target), "--key", str(key))
    assert result.exit_code == 1, result.stdout
    assert expected in result.stdout.splitlines()[1], result.stdout


def _device(folder: Path, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`sh run_on_device.sh ARGS` with this host's openssl, sha256sum and coreutils; python3 is a
    stub that says it ran, so what is checked is only whether the script lets the package run."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "python3").write_text('#!/bin/sh\necho "runner started: $*"\n')
    (stub / "python3").chmod(0o755)
    path = f"{stub}:{os.environ['PATH']}"
    return subprocess.run(["sh", str(folder / "run_on_device.sh"), *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": path, "HOME": str(tmp_path), **env})


@pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("sha256sum") is None, reason="needs openssl and sha256sum")
def test_run_on_device_verifies_with_the_system_openssl(signed, unsigned, keys, tmp_path):
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout
    assert version.startswith("OpenSSL"), version
    good = extract(signed, tmp_path / "good")
    ran = _device(good, tmp_path, "--key", str(keys[0].public), "doctor")
    assert ran.returncode == 0 and ran.stdout.strip() == "runner started: -B run_on_device.py doctor", ran.stderr
    by_env = _device(good, tmp_path, EDGEOPT_PUBKEY=str(keys[0].public))
    assert by_env.returncode == 0 and "runner started" in by_env.stdout, by_env.stderr
    no_key = _device(good, tmp_path)  # no key configured: runs, and says the signature was not checked
    assert no_key.returncode == 0 and "signature not checked" in no_key.stderr

    refused = {"unsigned": (extract(unsigned, tmp_path / "u"), keys[0].public, "this package is unsigned"),
               "other key": (good, keys[1].public, "does not verify with")}
    for tamper in (_file, _sums, _signature, _provenance):
        refused[tamper.__name__] = (extract(signed, tmp_path / tamper.__name__), keys[0].public, "")
        tamper(refused[tamper.__name__][0])
    added = extract(signed, tmp_path / "added")
    (added / "numpy.py").write_text("raise SystemExit('not numpy')\n")
    refused["added numpy.py"] = (added, keys[0].public, "numpy.py is not in SHA256SUMS")
    for case, (folder, key, reason) in refused.items():
        ran = _device(folder, tmp_path, "--key", str(key))
        assert ran.returncode == 1 and "runner started" not in ran.stdout, (case, ran.stdout, ran.stderr)
        assert "run_on_device.sh: refused:" in ran.stderr and reason in ran.stderr, (case, ran.stderr)


def test_the_private_key_goes_nowhere_and_must_be_private(signed, keys, jetson_build, tmp_path):
    secret = keys[0].private.read_bytes()
    with tarfile.open(signed) as tar:
        for member in tar.getmembers():
            if member.isfile():
                assert b"PRIVATE KEY" not in tar.extractfile(member).read(), member.name
    loose = tmp_path / "loose.key"
    loose.write_bytes(secret)
    loose.chmod(0o640)
    code, lines = run("package", jetson_build["build_dir"], "--out", str(tmp_path / "dist"), "--sign", str(loose))
    assert_one_line(code, lines, 2, "loose.key", "readable by group or others", "0640")
    assert not (tmp_path / "dist").exists()  # refused before any work
    code, lines = run("verify", str(signed), "--key", str(keys[0].private))
    assert_one_line(code, lines, 2, "not a PEM public key")


def test_release_refuses_a_loose_signing_key_before_building(tmp_path):
    loose = tmp_path / "release.key"
    keygen(tmp_path / "k")
    loose.write_bytes((tmp_path / "k" / "edgeopt-release.key").read_bytes())
    loose.chmod(0o644)
    code, lines = run("release", "--project", str(tmp_path / "no-such.yaml"), "--out", str(tmp_path / "out"), "--sign", str(loose))
    assert_one_line(code, lines, 2, "release.key", "readable by group or others")
    assert not (tmp_path / "out").exists()
