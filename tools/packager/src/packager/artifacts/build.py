"""Building an artifact from a validated model directory and its environment.

The archive holds the Triton model directories at its root, each python step's packed environment where
its EXECUTION_ENV_PATH points (identical files are stored once, as hard-link entries), the weights, and
`packager-manifest.json`: the sha256 of every file, the model, version, source commit, toolkit version,
target runtime and environment key. The same sources, weights and environment give the same content
digest on any machine, and the same archive bytes on one CPU family (see `packager.archives`).
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any

from packager import __version__
from packager.archives import Member, file_digest, tree_members, write_tar_gz
from packager.artifacts.artifact import (
    MANIFEST,
    MANIFEST_FORMAT,
    SIGNATURE,
    Artifact,
    ArtifactError,
    artifact_name,
    content_digest,
    parents,
)
from packager.artifacts.provenance import ignored_files, model_source
from packager.artifacts.signing import sign
from packager.environments import Environment
from packager.modeldir import (
    env_path,
    libraries_dir,
    library_files,
    model_libraries,
    top_model,
    vouched_by_dvc,
)
from packager.settings import Runtime
from packager.validation import ModelReport

SKIPPED_NAMES = ("__pycache__", ".gitignore")
SKIPPED_SUFFIXES = (".pyc", ".dvc")


def _kept(path: str, placed: str | None) -> bool:
    """What ships of a Triton model's directory: what `_keep` keeps, but the environment placed there."""
    return _keep(path) and path != placed


def _keep(name: str) -> bool:
    leaf = name.rsplit("/", 1)[-1]
    return leaf not in SKIPPED_NAMES and not leaf.endswith(SKIPPED_SUFFIXES)


def _members(report: ModelReport, environment: Environment | None) -> list[Member]:
    """Every Triton model's files, sorted, with each step's environment where EXECUTION_ENV_PATH points, and
    the directories that hold them (not an empty one: verification admits only what the manifest lists)."""
    members: list[Member] = []
    libs = libraries_dir(report.model.path)
    for name, triton in sorted(report.triton_models.items()):
        target = env_path(triton)
        placed = target.relative_to(triton.directory).as_posix() if target is not None else None
        members.append(Member(name, "dir"))
        for member in tree_members(triton.directory, name, keep=partial(_kept, placed=placed)):
            members.append(_followed(member, triton.directory.parent) if member.kind == "symlink" else member)
        if placed is not None and environment is not None:
            members.append(Member(f"{name}/{placed}", "file", source=environment.tarball))
        shared = [(f"{name}/{relative}", path) for relative, path in library_files(triton, libs)]
        directories = {parent for relative, _ in shared for parent in parents(relative)} - {
            m.name for m in members
        }
        members += [Member(directory, "dir") for directory in directories]
        members += [Member(relative, "file", source=path) for relative, path in shared]
    holding = {parent for member in members if member.kind != "dir" for parent in parents(member.name)}
    kept = [member for member in members if member.kind != "dir" or member.name in holding]
    return sorted(kept, key=lambda member: member.name)


def _followed(link: Member, parent: Path) -> Member:
    """A symlink inside the model directory, archived as the file it points to (validation keeps them inside)."""
    target = (parent / link.name).resolve()
    if not target.is_file():
        raise ArtifactError(
            f"{parent / link.name}: links to a directory; archives hold only files and directories"
        )
    return Member(link.name, "file", source=target, executable=os.access(target, os.X_OK))


def _provenance(
    report: ModelReport, members: list[Member], environment: Environment | None, repository: Path | None
) -> dict[str, Any]:
    """The manifest's source fields: the last commit of the sources, whether they are dirty, and the
    shipped files (by archive name) that git ignores and no DVC pointer vouches for, which make them so
    (as does a git that cannot tell)."""
    shared = model_libraries(report.triton_models.values(), libraries_dir(report.model.path))
    source = model_source(report.model.path, repository, [library.path for library in shared])
    built = environment.tarball if environment is not None else None
    origins = {member.name: _origins(report.model.path, member, built) for member in members}
    ignored = ignored_files(report.model.path, sorted({path for paths in origins.values() for path in paths}))
    vouched = vouched_by_dvc(report.model)
    unvouched = sorted(
        name
        for name, paths in origins.items()
        if not set(paths).isdisjoint(ignored or ()) and not any(vouched(path) for path in paths)
    )
    return {
        "source_commit": source.commit,
        "source_dirty": source.dirty or ignored is None or bool(unvouched),
        "source_ignored": unvouched,
    }


def _origins(model_path: Path, member: Member, built: Path | None) -> list[Path]:
    """Where a shipped file's bytes come from in the sources (absolute): the file, and the link to it where
    one led there (none for the environment, which is `built`)."""
    if member.kind != "file" or member.source is None or member.source == built:
        return []
    link = model_path / member.name
    return [member.source.absolute(), *([link.absolute()] if link.is_symlink() else [])]


def _manifest(
    report: ModelReport,
    runtime: Runtime,
    environment: Environment | None,
    files: dict[str, dict[str, Any]],
    provenance: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "model": report.model.name,
        "version": report.version,
        "top_model": top_model(report.triton_models),
        "content_digest": content_digest(files),
        **provenance,
        "toolkit": f"packager {__version__}",
        "runtime": {"name": runtime.name, "triton_version": runtime.triton_version, "python": runtime.python},
        "env_key": environment.key if environment is not None else None,
        "env_portable": environment.portable if environment is not None else None,
        "files": files,
    }


def build_artifact(
    report: ModelReport,
    runtime: Runtime,
    *,
    environment: Environment | None,
    out_dir: Path,
    signing_key: Path | None = None,
    repository: Path | None = None,
) -> Artifact:
    """Write `<out_dir>/<model>_<version>.tar.gz` for a validated model with its environment. The manifest
    marks the sources dirty when they are not committed, or not in `repository` (the monorepo)."""
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
    manifest = _manifest(
        report, runtime, environment, files, _provenance(report, members, environment, repository)
    )
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    head = [Member(MANIFEST, "file", data=manifest_bytes)]
    if signing_key is not None:
        head.append(Member(SIGNATURE, "file", data=sign(manifest_bytes, signing_key)))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / artifact_name(report.model.name, report.version)
    written = write_tar_gz(path, [*head, *archived])
    changed = sorted(
        name for name, digest in written.files.items() if name in files and digest != files[name]["sha256"]
    )
    if changed:
        path.unlink()
        raise ArtifactError(f"{path.name}: {', '.join(changed)} changed while it was built; build it again")
    return Artifact(path, written.sha256, manifest)
