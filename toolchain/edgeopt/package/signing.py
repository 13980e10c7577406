"""Package signatures: `edgeopt keygen`, `edgeopt package --sign KEY`, `edgeopt verify --key PUB`.

One signature covers the whole package: it is over SHA256SUMS, which lists every other file
(provenance and SBOM included), so a changed file fails the checksum check and a changed
SHA256SUMS fails the signature.

Why ECDSA P-256 with SHA-256, DER-encoded (the `openssl dgst` signature format), and not Ed25519:
a device must check the signature with only what JetPack ships, which is the OpenSSL command line
(1.1.1 on JetPack 5.1, 3.0 on JetPack 6.2). `openssl dgst -sha256 -verify pub.pem -signature
SHA256SUMS.sig SHA256SUMS` verifies ECDSA on both. `dgst` cannot do PureEdDSA (Ed25519 signs the
message, not a digest), and `openssl pkeyutl -rawin`, which Ed25519 needs on the command line,
arrived with OpenSSL 3.0 (openssl-pkeyutl(1): "-rawin ... For EdDSA this option is required";
1.1.1's pkeyutl has no -rawin), so an Ed25519 package could not be checked on JetPack 5.1.

Keys are the formats OpenSSL and every other tool read: the private key PKCS#8 PEM
(unencrypted, mode 0600, like an ssh key without a passphrase), the public key
SubjectPublicKeyInfo PEM. A user's own P-256 key (`openssl ecparam -name prime256v1 -genkey |
openssl pkcs8 -topk8 -nocrypt`) works the same. The private key is read only to sign and never
written anywhere else: not into a package, not into the cache. Signing is deterministic
(RFC 6979), so the same build packaged twice with one key is the same bytes.

The `cryptography` package does the work (the maintained binding to OpenSSL); it is imported
inside the functions because it is needed only when signing or checking a signature.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from pydantic import BaseModel

from edgeopt.errors import BadInput

PRIVATE_KEY = "edgeopt-release.key"  # `edgeopt keygen` file names
PUBLIC_KEY = "edgeopt-release.pub"
KEY_LIMIT = 64 * 1024  # a PEM key is under 1 KB; never read a large file the user named by mistake


class KeyPair(BaseModel):
    private: Path
    public: Path


def _read_key_file(path: Path, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such {what} file")
    if path.stat().st_size > KEY_LIMIT:
        raise BadInput(f"{path}: too large for a PEM {what} ({path.stat().st_size:,} bytes)")
    return path.read_bytes()


def _is_p256(key) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec  # only when a key is read

    return isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and key.curve.name == "secp256r1"


def load_private_key(path: Path):
    """The signing key, refused (BadInput) when group or others may read it, when it is not an
    unencrypted PEM PKCS#8 / EC key, or when it is not P-256."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization  # only when signing

    path = Path(path)
    if path.is_file() and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise BadInput(f"{path}: private key is readable by group or others (mode "
                       f"{stat.S_IMODE(path.stat().st_mode):04o}); run chmod 600 {path}")
    data = _read_key_file(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise BadInput(f"{path}: private key is encrypted; edgeopt signs with an unencrypted PKCS#8 PEM key (mode 0600)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise BadInput(f"{path}: not a PEM private key (expected PKCS#8 '-----BEGIN PRIVATE KEY-----')") from None
    if not _is_p256(key):
        raise BadInput(f"{path}: not an ECDSA P-256 key (the curve a device's OpenSSL 1.1.1 and 3.0 both verify)")
    return key


def load_public_key(path: Path):
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization  # only when verifying

    path = Path(path)
    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise BadInput(f"{path}: not a PEM public key (expected '-----BEGIN PUBLIC KEY-----')") from None
    if not _is_p256(key):
        raise BadInput(f"{path}: not an ECDSA P-256 public key")
    return key


def sign(private_key_path: Path, data: bytes) -> bytes:
    """DER ECDSA-SHA256 signature of `data` (what `openssl dgst -sha256 -sign` writes)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = load_private_key(private_key_path)
    return key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))


def signature_problem(public_key_path: Path, data: bytes, signature: bytes) -> str | None:
    """None when `signature` is `data`'s signature by the key's owner, else the reason."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = load_public_key(public_key_path)
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "signature does not match (signed by another key, or SHA256SUMS or the signature changed)"
    return None


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write `data` under a temporary name with `mode` from the start, then link it into place:
    never replaces an existing file (os.link fails if `path` exists) and never leaves half a key."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def keygen(out: Path) -> KeyPair:
    """A new P-256 key pair in `out`: PRIVATE_KEY (PKCS#8 PEM, mode 0600) and PUBLIC_KEY (PEM,
    0644). An existing key is never overwritten (BadInput)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: --out is a file, not a folder")
    private, public = out / PRIVATE_KEY, out / PUBLIC_KEY
    for path in (private, public):
        if path.exists() or path.is_symlink():
            raise BadInput(f"{path}: already exists; edgeopt never overwrites a key (choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    _write_new(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), 0o600)
    try:
        _write_new(public, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    except BaseException:
        private.unlink()
        raise
    return KeyPair(private=private.resolve(), public=public.resolve())


# --- the device side: run_on_device.sh's checks, in POSIX sh with JetPack's own tools ------------


def device_check_lines(checksums: str, signature: str) -> list[str]:
    """The lines of run_on_device.sh that run before anything else (after `set -eu`): take the
    public key (--key FILE, else $EDGEOPT_PUBKEY, else /etc/edgeopt/release.pub), verify the
    signature with `openssl dgst` (OpenSSL 1.1.1 and 3.0, see the module docstring), then every
    file with `sha256sum -c`, then refuse Python files SHA256SUMS does not list (python3 imports
    from the package folder, so an added numpy.py would run). With a key configured, an unsigned
    package is refused: a device that trusts one release key runs nothing else."""
    refuse = 'echo "run_on_device.sh: refused: {why}" >&2; exit 1'
    return [
        'key="${EDGEOPT_PUBKEY:-}"',
        'if [ "${1:-}" = "--key" ]; then',
        '  [ $# -ge 2 ] || { echo "run_on_device.sh: --key needs a public key file" >&2; exit 2; }',
        '  key="$2"; shift 2',
        "fi",
        'if [ -z "$key" ] && [ -f /etc/edgeopt/release.pub ]; then key=/etc/edgeopt/release.pub; fi',
        'case "$key" in ""|/*) ;; *) key="$PWD/$key" ;; esac',
        'cd "$(dirname "$0")"',
        'if [ -n "$key" ]; then',
        '  [ -f "$key" ] || { ' + refuse.format(why="public key $key not found") + "; }",
        f"  [ -f {signature} ] || {{ " + refuse.format(
            why=f"a release key is configured ($key) but this package is unsigned (no {signature})") + "; }",
        "  command -v openssl >/dev/null 2>&1 || { " + refuse.format(why="openssl not found: cannot check the signature") + "; }",
        f'  if ! openssl dgst -sha256 -verify "$key" -signature {signature} {checksums} >/dev/null 2>&1; then',
        "    " + refuse.format(why=f"{signature} does not verify with $key (signed by another key, or {checksums} "
                                  "or the signature changed)"),
        "  fi",
        f"elif [ -f {signature} ]; then",
        f'  echo "run_on_device.sh: signed package but no public key (--key, EDGEOPT_PUBKEY or '
        f'/etc/edgeopt/release.pub): signature not checked" >&2',
        "fi",
        f"sha256sum -c --quiet {checksums} || {{ " + refuse.format(why=f"a file differs from {checksums}") + "; }",
        "for file in $(find . -type f \\( -name '*.py' -o -name '*.pyc' -o -name '*.so' -o -name '*.pth' \\) | sed 's|^\\./||'); do",
        f'  cut -c67- {checksums} | grep -qxF -- "$file" || {{ ' + refuse.format(why=f"$file is not in {checksums}") + "; }",
        "done",
    ]


def public_key_id(key) -> str:
    """sha256 of the public key's DER SubjectPublicKeyInfo: which key signed (package.json)."""
    import hashlib

    from cryptography.hazmat.primitives import serialization

    return hashlib.sha256(key.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def key_id(private_key_path: Path) -> str:
    """The id of a private key's public half; loading it refuses a loose or wrong key."""
    return public_key_id(load_private_key(private_key_path).public_key())
