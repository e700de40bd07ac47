"""Ed25519 signatures over an artifact's manifest (which holds the sha256 of every file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from packager.errors import PackagerError, UsageError


class KeyUnusable(PackagerError):
    """A key file that is not the Ed25519 key its use needs (garbage, the other half of a pair, RSA...)."""


def generate_keys(private_path: Path, public_path: Path) -> None:
    """Write a new key pair as PEM; never overwrites an existing key."""
    for path in (private_path, public_path):
        if path.exists():
            raise UsageError(f"{path} exists; keys are never overwritten")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for path in (private_path, public_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    private_path.touch(mode=0o600)
    private_path.write_bytes(private)
    public_path.write_bytes(public)


def sign(data: bytes, private_path: Path) -> bytes:
    """The signature of `data` (Ed25519 is deterministic: same key and data, same bytes)."""
    return read_private_key(private_path).sign(data)


def verify(data: bytes, signature: bytes, public_path: Path) -> bool:
    try:
        read_public_key(public_path).verify(signature, data)
    except InvalidSignature:
        return False
    return True


def read_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM file; KeyUnusable for anything else (a public key included)."""
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: the packager signs unattended, with no passphrase to give
        reason = "it is encrypted; export it without a passphrase"
    except (ValueError, UnsupportedAlgorithm):
        reason = (
            "it is a public key" if _loads(serialization.load_pem_public_key, data) else "no PEM key in it"
        )
    else:
        if isinstance(key, Ed25519PrivateKey):
            return key
        reason = f"it is {_kind(key)}"
    raise KeyUnusable(
        f"{path}: not an Ed25519 private key ({reason}); sign with the private key `packager keygen` wrote "
        "(--sign-key or PACKAGER_SIGNING_KEY)"
    )


def read_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in a PEM file; KeyUnusable for anything else (a private key included)."""
    data = path.read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        private = _loads(lambda pem: serialization.load_pem_private_key(pem, password=None), data)
        reason = (
            "it is a private key, which never leaves the signer" if private else "no PEM public key in it"
        )
    else:
        if isinstance(key, Ed25519PublicKey):
            return key
        reason = f"it is {_kind(key)}"
    raise KeyUnusable(
        f"{path}: not an Ed25519 public key ({reason}); verify with the .pub file `packager keygen` wrote "
        "(--public-key, PACKAGER_VERIFY_KEY or packager.toml [signing] public_key)"
    )


def _loads(load: Callable[[bytes], object], data: bytes) -> bool:
    """Whether `load` reads a key from `data` (to say what a refused key file is instead)."""
    try:
        load(data)
    except TypeError:  # only an encrypted private key wants a password: a key all the same
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def _kind(key: object) -> str:
    """What a PEM key of another algorithm is, for the refusal: "RSA, not Ed25519", say."""
    algorithm = type(key).__name__.lstrip("_").removesuffix("PrivateKey").removesuffix("PublicKey")
    return f"{algorithm}, not Ed25519"
