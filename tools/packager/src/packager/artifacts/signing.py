"""Ed25519 signatures over an artifact's manifest (which holds the sha256 of every file)."""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from packager.errors import UsageError


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
    key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{private_path} is not an Ed25519 private key (make one with `packager keygen`)")
    return key.sign(data)


def verify(data: bytes, signature: bytes, public_path: Path) -> bool:
    key = serialization.load_pem_public_key(public_path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{public_path} is not an Ed25519 public key")
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
