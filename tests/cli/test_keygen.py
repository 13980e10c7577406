"""`edgeopt keygen`: a P-256 key pair in the formats OpenSSL reads, the private key 0600, and
never an existing file overwritten."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess

import pytest
from helpers.cli_lines import assert_one_line, run

from conftest import run_cli


def test_keygen_writes_a_private_and_a_public_key(tmp_path):
    result = run_cli("keygen", "--out", str(tmp_path / "keys"), "--json")
    assert result.exit_code == 0, result.stderr
    pair = json.loads(result.stdout)
    private, public = tmp_path / "keys" / "edgeopt-release.key", tmp_path / "keys" / "edgeopt-release.pub"
    assert (pair["private"], pair["public"]) == (str(private), str(public))
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and stat.S_IMODE(public.stat().st_mode) == 0o644
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    if shutil.which("openssl"):  # the device's tool reads them: the curve is P-256 (prime256v1)
        text = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(public), "-noout", "-text"],
                              capture_output=True, text=True, check=True).stdout
        assert "prime256v1" in text or "P-256" in text


def test_keygen_never_overwrites_a_key(tmp_path):
    (tmp_path / "edgeopt-release.pub").write_text("someone's key\n")
    code, lines = run("keygen", "--out", str(tmp_path))
    assert_one_line(code, lines, 2, "edgeopt-release.pub", "already exists")
    assert (tmp_path / "edgeopt-release.pub").read_text() == "someone's key\n"
    assert not (tmp_path / "edgeopt-release.key").exists()


@pytest.mark.parametrize("content, needle", [(b"not a key", "not a PEM private key"),
                                             (b"", "not a PEM private key")])
def test_a_file_that_is_not_a_private_key_is_refused(tmp_path, content, needle):
    key = tmp_path / "bad.key"
    key.write_bytes(content)
    key.chmod(0o600)
    from edgeopt.errors import BadInput
    from edgeopt.package.signing import load_private_key

    with pytest.raises(BadInput, match=needle):
        load_private_key(key)


def test_an_ed25519_key_is_refused_because_jetpack_5_cannot_verify_it(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = tmp_path / "ed25519.key"
    key.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key.chmod(0o600)
    code, lines = run("package", "nowhere", "--sign", str(key))
    assert_one_line(code, lines, 2, "ed25519.key", "not an ECDSA P-256 key")
