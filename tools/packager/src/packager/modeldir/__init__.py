"""The model-directory contract: what a model directory is, and reading what it holds.

Owns discovery (model directories, their Triton models and versions, the monorepo root), Triton's
`config.pbtxt` read with the position of every field, diagnostics (`path:line:col: message`), test cases
(`tests/cases/*.json`), DVC-tracked weights, requirements and their lock, the shared libraries under
`libs/` that steps import, `packager new`'s scaffold, and `packager adopt`'s layout of an existing model.
Every later stage reads model directories through these names only; nothing here runs a server or builds
anything.

Public: ModelDir, discover_models, find_repo_root, models_under, version_dirs, name_problem,
MODEL_VERSION_FILE, MODELS_DIR, TRITON_CONFIG; Diagnostic, display_path; TritonModel, ParsedConfig,
ConfigUnreadable, read_config, read_text, env_path, top_model, gpu_groups, gpu_diagnostic, enum_name,
ENSEMBLE, PYTHON, PLATFORM_BACKENDS, ENV_PATH_PARAMETER, ENV_PATH_VALUE, MODEL_DIRECTORY_VARIABLE; Case, Tensor, Tolerance, CaseError,
load_cases, case_files, CASES_DIR; Weight, pointers, weights, check_weights, vouched_by_dvc, pull; REQUIREMENTS_FILE, LOCK_FILE, RequirementLine,
RequirementsError, parse_requirements, digest, LockHeader, read_lock_header, lock_problems; LIBS_DIR,
Library, LibraryError, libraries_dir, library_files, model_libraries, shared_libraries; scaffold;
adopt, Adoption, AdoptionError, case_template, write_case_template, kserve_datatype, example_inputs,
example_tensor; Completion, Completer (configs as Triton completes them).
"""

from packager.modeldir.adopt import Adoption, AdoptionError, adopt, case_template, write_case_template
from packager.modeldir.cases import (
    CASES_DIR,
    Case,
    CaseError,
    Tensor,
    Tolerance,
    case_files,
    example_inputs,
    example_tensor,
    kserve_datatype,
    load_cases,
)
from packager.modeldir.completion import Completer, Completion
from packager.modeldir.diagnostics import Diagnostic, display_path
from packager.modeldir.discovery import (
    MODEL_VERSION_FILE,
    MODELS_DIR,
    TRITON_CONFIG,
    ModelDir,
    discover_models,
    find_repo_root,
    models_under,
    name_problem,
    version_dirs,
)
from packager.modeldir.libs import (
    LIBS_DIR,
    Library,
    LibraryError,
    libraries_dir,
    library_files,
    model_libraries,
    shared_libraries,
)
from packager.modeldir.model_config import (
    ENSEMBLE,
    ENV_PATH_PARAMETER,
    ENV_PATH_VALUE,
    MODEL_DIRECTORY_VARIABLE,
    PLATFORM_BACKENDS,
    PYTHON,
    ConfigUnreadable,
    ParsedConfig,
    TritonModel,
    enum_name,
    env_path,
    gpu_diagnostic,
    gpu_groups,
    read_config,
    read_text,
    top_model,
)
from packager.modeldir.requirements import (
    LOCK_FILE,
    REQUIREMENTS_FILE,
    LockHeader,
    RequirementLine,
    RequirementsError,
    digest,
    lock_problems,
    parse_requirements,
    read_lock_header,
)
from packager.modeldir.scaffold import scaffold
from packager.modeldir.weights import Weight, check_weights, pointers, pull, vouched_by_dvc, weights

__all__ = [
    "Adoption",
    "AdoptionError",
    "adopt",
    "case_template",
    "write_case_template",
    "Completer",
    "Completion",
    "CASES_DIR",
    "Case",
    "CaseError",
    "Tensor",
    "Tolerance",
    "case_files",
    "example_inputs",
    "example_tensor",
    "kserve_datatype",
    "load_cases",
    "Diagnostic",
    "display_path",
    "MODEL_VERSION_FILE",
    "MODELS_DIR",
    "TRITON_CONFIG",
    "ModelDir",
    "discover_models",
    "find_repo_root",
    "models_under",
    "name_problem",
    "version_dirs",
    "ENSEMBLE",
    "ENV_PATH_PARAMETER",
    "ENV_PATH_VALUE",
    "MODEL_DIRECTORY_VARIABLE",
    "PLATFORM_BACKENDS",
    "PYTHON",
    "ConfigUnreadable",
    "ParsedConfig",
    "TritonModel",
    "enum_name",
    "env_path",
    "gpu_diagnostic",
    "gpu_groups",
    "read_config",
    "read_text",
    "top_model",
    "LOCK_FILE",
    "REQUIREMENTS_FILE",
    "LockHeader",
    "RequirementLine",
    "RequirementsError",
    "digest",
    "lock_problems",
    "parse_requirements",
    "read_lock_header",
    "scaffold",
    "LIBS_DIR",
    "Library",
    "LibraryError",
    "libraries_dir",
    "library_files",
    "model_libraries",
    "shared_libraries",
    "Weight",
    "check_weights",
    "pointers",
    "pull",
    "vouched_by_dvc",
    "weights",
]
