"""Artifacts: `<model>_<version>.tar.gz` as a SageMaker multi-model endpoint consumes it.

Owns building an archive from a validated model directory and its environment (`build`), what an
artifact is and its identity (`artifact`), reading and verifying built archives (`verify`), Ed25519
signatures over the manifest (`signing`), and where an artifact comes from: git commit, branch, actor and
pipeline (`provenance`). Publishing artifacts is the release stage's job.

Public: Artifact, ArtifactError, artifact_name, content_digest, MANIFEST, SIGNATURE, build_artifact,
read_manifest, verify_artifact, verified, triton_models_in, generate_keys, sign, verify,
read_private_key, read_public_key, KeyUnusable,
Source, model_source, current_branch, ci_revision, full_commit, branch_ref,
is_ancestor, merge_base, matches_commit, branch_slug, actor, pipeline.
"""

from packager.artifacts.artifact import (
    MANIFEST,
    SIGNATURE,
    Artifact,
    ArtifactError,
    artifact_name,
    content_digest,
)
from packager.artifacts.build import build_artifact
from packager.artifacts.provenance import (
    Source,
    actor,
    branch_ref,
    branch_slug,
    ci_revision,
    current_branch,
    full_commit,
    is_ancestor,
    matches_commit,
    merge_base,
    model_source,
    pipeline,
)
from packager.artifacts.signing import (
    KeyUnusable,
    generate_keys,
    read_private_key,
    read_public_key,
    sign,
    verify,
)
from packager.artifacts.verify import (
    read_manifest,
    triton_models_in,
    verified,
    verify_artifact,
)

__all__ = [
    "MANIFEST",
    "SIGNATURE",
    "Artifact",
    "ArtifactError",
    "artifact_name",
    "content_digest",
    "build_artifact",
    "Source",
    "actor",
    "branch_ref",
    "branch_slug",
    "ci_revision",
    "current_branch",
    "full_commit",
    "is_ancestor",
    "matches_commit",
    "merge_base",
    "model_source",
    "pipeline",
    "generate_keys",
    "sign",
    "verify",
    "read_private_key",
    "read_public_key",
    "KeyUnusable",
    "read_manifest",
    "triton_models_in",
    "verified",
    "verify_artifact",
]
