"""The artifact: `<model>_<version>.tar.gz` as a SageMaker multi-model endpoint consumes it.

The archive holds the Triton model directories at its root, each python step's packed environment where
its EXECUTION_ENV_PATH points (identical files are stored once, as hard-link entries), the weights, and
`packager-manifest.json`: the sha256 of every file, the model, version, source commit, toolkit version,
target runtime and environment key. Archives are byte-reproducible: the same sources, weights and
environment give the same sha256 on any machine and run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from packager import __version__
from packager.archives import Member, UnsafeArchive, extract, file_digest, tree_members, write_tar_gz
from packager.config import Runtime
from packager.environments import Environment, env_path
from packager.errors import PackagerError
from packager.discovery import CONFIG_FILE
from packager.model_config import ConfigUnreadable, TritonModel, read_config
from packager.provenance import model_source
from packager.serving import top_model
from packager.signing import sign, verify
from packager.validation import ModelReport

MANIFEST = "packager-manifest.json"
SIGNATURE = "packager-manifest.sig"
FORMAT = 1
SKIPPED_NAMES = ("__pycache__", ".gitignore")
SKIPPED_SUFFIXES = (".pyc", ".dvc")


class ArtifactError(PackagerError):
    """An artifact is not what its manifest says, or cannot be read safely."""


@dataclass(frozen=True)
class Artifact:
    """A built archive and what its manifest says."""

    path: Path
    sha256: str
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["model"])

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def content_digest(self) -> str:
        return str(self.manifest["content_digest"])


def artifact_name(model: str, version: int) -> str:
    return f"{model}_{version}.tar.gz"


def content_digest(files: dict[str, dict[str, Any]]) -> str:
    """One digest over every file's path and sha256: equal for equal contents, whatever built them."""
    canonical = json.dumps({path: entry["sha256"] for path, entry in sorted(files.items())}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _keep(name: str) -> bool:
    leaf = name.rsplit("/", 1)[-1]
    return leaf not in SKIPPED_NAMES and not leaf.endswith(SKIPPED_SUFFIXES)


def _members(report: ModelReport, environment: Environment | None) -> list[Member]:
    """Every Triton model's files, sorted, with each step's environment where EXECUTION_ENV_PATH points."""
    members: list[Member] = []
    for name, triton in sorted(report.triton_models.items()):
        target = env_path(triton)
        placed = target.relative_to(triton.directory).as_posix() if target is not None else None
        members.append(Member(name, "dir"))
        for member in tree_members(triton.directory, name, keep=lambda path: _keep(path) and path != placed):
            members.append(_followed(member, triton.directory.parent) if member.kind == "symlink" else member)
        if placed is not None and environment is not None:
            members.append(Member(f"{name}/{placed}", "file", source=environment.tarball))
    return sorted(members, key=lambda member: member.name)


def _followed(link: Member, parent: Path) -> Member:
    """A symlink inside the model directory, archived as the file it points to (validation keeps them inside)."""
    target = (parent / link.name).resolve()
    if not target.is_file():
        raise ArtifactError(
            f"{parent / link.name}: links to a directory; archives hold only files and directories"
        )
    return Member(link.name, "file", source=target, executable=os.access(target, os.X_OK))


def _manifest(
    report: ModelReport, runtime: Runtime, environment: Environment | None, files: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    source = model_source(report.model.path)
    return {
        "format": FORMAT,
        "model": report.model.name,
        "version": report.version,
        "top_model": top_model(report.triton_models),
        "content_digest": content_digest(files),
        "source_commit": source.commit,
        "source_dirty": source.dirty,
        "toolkit": f"packager {__version__}",
        "runtime": {"name": runtime.name, "triton_version": runtime.triton_version, "python": runtime.python},
        "env_key": environment.key if environment is not None else None,
        "files": files,
    }


def build_artifact(
    report: ModelReport,
    runtime: Runtime,
    environment: Environment | None,
    out_dir: Path,
    signing_key: Path | None = None,
) -> Artifact:
    """Write `<out_dir>/<model>_<version>.tar.gz` for a validated model with its environment."""
    assert report.ok and report.version is not None, "build only validated models"
    members = _members(report, environment)
    files: dict[str, dict[str, Any]] = {}
    first_by_digest: dict[str, str] = {}
    archived: list[Member] = []
    for member in members:
        if member.kind != "file":
            archived.append(member)
            continue
        assert member.source is not None
        digest = file_digest(member.source)
        files[member.name] = {"sha256": digest, "size": member.source.stat().st_size}
        if digest in first_by_digest:  # identical bytes: store once, as a hard link to the first copy
            archived.append(
                Member(member.name, "hardlink", target=first_by_digest[digest], executable=member.executable)
            )
        else:
            first_by_digest[digest] = member.name
            archived.append(member)
    manifest = _manifest(report, runtime, environment, files)
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    head = [Member(MANIFEST, "file", data=manifest_bytes)]
    if signing_key is not None:
        head.append(Member(SIGNATURE, "file", data=sign(manifest_bytes, signing_key)))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / artifact_name(report.model.name, report.version)
    write_tar_gz(path, [*head, *archived])
    return Artifact(path, file_digest(path), manifest)


def read_manifest(archive: Path) -> tuple[dict[str, Any], bytes, bytes | None]:
    """The manifest (parsed and raw) and its signature, if any, read from an archive.

    The packager writes both first, so reading stops there instead of decompressing the whole archive.
    """
    raw: bytes | None = None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name == MANIFEST:
                    raw = _member_bytes(tar, member)
                elif raw is not None:
                    signature = _member_bytes(tar, member) if member.name == SIGNATURE else None
                    return json.loads(raw), raw, signature
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ArtifactError(f"{archive}: not a readable tar.gz ({error})") from None
    if raw is None:
        raise ArtifactError(f"{archive}: no {MANIFEST}; not an artifact built by the packager")
    return json.loads(raw), raw, None


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes | None:
    handle = tar.extractfile(member)
    return handle.read() if handle is not None else None


def load_artifact(archive: Path) -> Artifact:
    manifest, _, _ = read_manifest(archive)
    return Artifact(archive, file_digest(archive), manifest)


def verify_artifact(
    artifact: Artifact, public_key: Path | None = None, expected_sha256: str | None = None
) -> list[str]:
    """Every way an artifact differs from its manifest, signature and recorded digest (none: it verifies)."""
    problems = []
    if expected_sha256 is not None and artifact.sha256 != expected_sha256:
        problems.append(
            f"archive sha256 is {artifact.sha256}, but {expected_sha256} was recorded when it was published"
        )
    manifest, raw, signature = read_manifest(artifact.path)
    with unpacked(artifact.path) as root:
        present = {
            path.relative_to(root).as_posix()
            for path in root.rglob("*")
            if path.is_file() and path.relative_to(root).as_posix() not in (MANIFEST, SIGNATURE)
        }
        listed = manifest.get("files", {})
        for name in sorted(set(listed) - present):
            problems.append(f"{name}: listed in the manifest but missing")
        for name in sorted(present - set(listed)):
            problems.append(f"{name}: present but not in the manifest")
        for name in sorted(set(listed) & present):
            if file_digest(root / name) != listed[name]["sha256"]:
                problems.append(f"{name}: sha256 differs from the manifest")
    if content_digest(listed) != manifest.get("content_digest"):
        problems.append("the manifest's content_digest does not match its file list")
    if public_key is not None:
        if signature is None:
            problems.append(f"not signed ({SIGNATURE} is missing), but a public key is configured")
        elif not verify(raw, signature, public_key):
            problems.append(f"the manifest signature does not verify with {public_key}")
    return problems


@contextmanager
def unpacked(archive: Path) -> Iterator[Path]:
    """The archive safely extracted into a temporary directory (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="packager-artifact-") as scratch:
        try:
            extract(archive, Path(scratch))
        except UnsafeArchive as error:
            raise ArtifactError(f"{archive}: unsafe archive: {error}") from None
        except (tarfile.TarError, OSError, EOFError) as error:
            raise ArtifactError(f"{archive}: not a readable tar.gz ({error})") from None
        yield Path(scratch)


def triton_models_in(root: Path) -> dict[str, TritonModel]:
    """The Triton models of an unpacked artifact (its top-level directories with a config.pbtxt)."""
    models = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and (entry / CONFIG_FILE).is_file():
            try:
                models[entry.name] = TritonModel(entry, read_config(entry / CONFIG_FILE))
            except ConfigUnreadable as error:
                raise ArtifactError(f"the artifact's {error.diagnostic.message}") from None
    return models
