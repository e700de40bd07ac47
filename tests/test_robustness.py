"""Never a traceback on any input: the example models, the validator corpus, case files and packager.toml,
mutated (truncations, byte flips, wrong types, duplicated keys, deep nesting, huge numbers, odd encodings)
and fed to `validate`, the case loader and the config loader. The only outcomes allowed are success or an
error located in the file it is about.

Property-based (hypothesis). By default a bounded, derandomized number of examples runs (what CI runs);
`PACKAGER_FUZZ=long` runs thousands (tests/README.md). Every crash a long run found is pinned at the end of
this file as a plain test of its exact input.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import shutil
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc.model_config_pb2 import ModelInput, ModelOutput

from packager.config import load_config
from packager.environments import ENV_BUILDERS
from packager.modeldir import (
    CaseError,
    Diagnostic,
    ModelDir,
    TritonModel,
    kserve_datatype,
    load_cases,
    top_model,
)
from packager.modeldir.cases import DATATYPES
from packager.modeldir.model_config import ModelConfig
from packager.settings import Config, ConfigError
from packager.toml_positions import TomlPositions
from packager.triton import LAUNCHERS
from packager.validation import ModelReport, validate_model

REPO = Path(__file__).parent.parent
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("PACKAGER_FUZZ_EXAMPLES", "3000")),
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile(os.environ.get("PACKAGER_FUZZ", "ci"))

# --- Mutations: each takes the bytes of a file and returns other bytes. -------------------------------

# Raw literals spliced over a token: wrong types, numbers past every limit, bad escapes, deep nesting.
NASTY = [
    b"9" * 5000,
    b"1" + b"0" * 400,
    str(2**200).encode(),
    b"-9223372036854775809",
    b"18446744073709551616",
    b"2147483648",
    b"1e999",
    b"-0",
    b"99",
    b"-1",
    b"0x1F",
    b"1_000",
    b"nan",
    b"NaN",
    b"-Infinity",
    b"inf",
    b'""',
    b'"\\ud800"',
    b'"\\udc80x"',
    b'"\\xff"',
    b"'x'",
    b"true",
    b"null",
    b"[]",
    b"{}",
    b"[" * 5000 + b"]" * 5000,
    b"{" * 3000,
    b"TYPE_NONSENSE",
    b"2001-13-45",
    b"!!int abc",
    b"{ a = 1 }",
    b"1979-05-27T07:32:00Z",
]
# Bytes and characters that trip decoders and line counting.
ODD = [b"\xff", b"\xe9", b"\xef\xbb\xbf", b"\x00", b"\r", b"\x0c", b"\x1c", "\u2028".encode(), b"\\", b'"']
ENCODINGS = ["utf-16", "utf-16-be", "utf-32", "latin-1", "cp1252", "utf-8-sig"]
TOKEN = re.compile(rb'"(?:[^"\\\n]|\\.)*"|-?[0-9][0-9.eE+-]*|[A-Za-z_][A-Za-z0-9_]*')

Mutator = Callable[[st.DrawFn, bytes], bytes]


def _offset(draw: st.DrawFn, data: bytes) -> int:
    """A position in `data`, its end included."""
    return draw(st.integers(0, len(data)))


def _truncate(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` cut short anywhere."""
    return data[: _offset(draw, data)]


def _flip(draw: st.DrawFn, data: bytes) -> bytes:
    """One byte of `data` with some of its bits flipped."""
    if not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]


def _insert(draw: st.DrawFn, data: bytes) -> bytes:
    """An odd byte, a nasty literal or random bytes put anywhere in `data`."""
    at = _offset(draw, data)
    inserted = draw(st.sampled_from(ODD + NASTY) | st.binary(min_size=1, max_size=8))
    return data[:at] + inserted + data[at:]


def _delete(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` without one of its slices."""
    start = _offset(draw, data)
    return data[:start] + data[draw(st.integers(start, len(data))) :]


def _duplicate(draw: st.DrawFn, data: bytes) -> bytes:
    """A slice copied elsewhere: repeated keys, lines and blocks."""
    start = _offset(draw, data)
    piece = data[start : draw(st.integers(start, len(data)))]
    at = _offset(draw, data)
    return data[:at] + piece + data[at:]


def _replace_token(draw: st.DrawFn, data: bytes) -> bytes:
    """A string, number or word replaced by a literal of another type or past a limit."""
    tokens = list(TOKEN.finditer(data))
    if not tokens:
        return data
    token = draw(st.sampled_from(tokens))
    return data[: token.start()] + draw(st.sampled_from(NASTY)) + data[token.end() :]


def _swap_token(draw: st.DrawFn, data: bytes) -> bytes:
    """A token replaced by another of the same file: a field or key where another belongs, a name moved."""
    tokens = list(TOKEN.finditer(data))
    if not tokens:
        return data
    token, other = draw(st.sampled_from(tokens)), draw(st.sampled_from(tokens))
    return data[: token.start()] + other.group() + data[token.end() :]


def _reencode(draw: st.DrawFn, data: bytes) -> bytes:
    """The text of `data` saved in another encoding (UTF-16, Latin-1, a BOM...)."""
    return data.decode("utf-8", "replace").encode(draw(st.sampled_from(ENCODINGS)), "replace")


MUTATORS: list[Mutator] = [
    _truncate,
    _flip,
    _insert,
    _delete,
    _duplicate,
    _replace_token,
    _swap_token,
    _reencode,
]


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` after one to three mutations."""
    for _ in range(draw(st.integers(1, 3))):
        data = draw(st.sampled_from(MUTATORS))(draw, data)
    return data


# --- JSON values and structural mutations of JSON documents. ---------------------------------------------

CASE_KEYS = ["description", "model", "inputs", "outputs", "name", "datatype", "shape", "data", "files"]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**200), 2**200)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10)
)


def _json_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Arrays and objects (keyed like a case, or not) of `children`."""
    keys = st.sampled_from(CASE_KEYS) | st.text(max_size=6)
    return st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)


JSON_VALUES = st.recursive(SCALARS, _json_containers, max_leaves=12)
RAW_JSON = [
    f"[0, {2**70}]",
    f"[{2**24 + 1}, 0]",
    "[-1]",
    "[[1]]",
    "[" * 5000 + "]" * 5000,
    '{"a": ' * 3000 + "1" + "}" * 3000,
    "1" * 5000,
    "1e999",
    "-1e999",
    "NaN",
    str(2**200),
    '"\\ud800"',
    '["\\udc80", "x"]',
]
PLACEHOLDER = "\x01placeholder\x01"

JsonPath = tuple[str | int, ...]


def _json_paths(value: Any, path: JsonPath = ()) -> Iterator[JsonPath]:
    """The path of `value` and of everything inside it."""
    yield path
    members = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, member in members:
        yield from _json_paths(member, (*path, key))


def _at(document: Any, path: JsonPath) -> Any:
    """The value at `path` in `document`."""
    for key in path:
        document = document[key]
    return document


def _with_raw(document: Any, path: JsonPath, raw: str) -> str:
    """`document` as JSON text with the value at `path` replaced by the text `raw`."""
    if not path:
        return raw
    document = copy.deepcopy(document)
    _at(document, path[:-1])[path[-1]] = PLACEHOLDER
    return json.dumps(document, indent=1).replace(json.dumps(PLACEHOLDER), raw)


@st.composite
def json_mutated(draw: st.DrawFn, text: str) -> bytes:
    """A JSON document with one value replaced by another type or a raw literal, removed, or given a sibling
    (a duplicated key in an object)."""
    document = json.loads(text)
    path = draw(st.sampled_from(list(_json_paths(document))))
    old = _at(document, path)
    new = draw(st.sampled_from(RAW_JSON) | JSON_VALUES.map(json.dumps))
    operation = draw(st.sampled_from(["replace", "sibling", "remove"]))
    if operation == "replace" or not path:
        return _with_raw(document, path, new).encode()
    if operation == "sibling":
        key = f"{json.dumps(path[-1])}: " if isinstance(path[-1], str) else ""
        return _with_raw(document, path, f"{json.dumps(old)}, {key}{new}").encode()
    document = copy.deepcopy(document)
    del _at(document, path[:-1])[path[-1]]
    return json.dumps(document).encode()


# --- The files under test, copied once per module. -----------------------------------------------------

SOURCES = [REPO / "models" / "digits", REPO / "models" / "churn", *sorted(REPO.glob("tests/corpus/*/*"))]
MUTABLE = re.compile(
    r"(.*/)?(config\.pbtxt|model_version\.txt|requirements\.(txt|lock)|[^/]*\.dvc|model\.py)"
    r"|tests/cases/.*\.json"
)


def _mutable_files(source: Path) -> list[str]:
    """The files of a model directory that the fuzzing mutates, relative to it."""
    return sorted(
        path.relative_to(source).as_posix()
        for path in source.rglob("*")
        if path.is_file() and MUTABLE.fullmatch(path.relative_to(source).as_posix())
    )


TARGETS = [(index, name) for index, source in enumerate(SOURCES) for name in _mutable_files(source)]
CASE_FILES = [(index, name) for index, name in TARGETS if name.startswith("tests/cases/")]


def _copy(source: Path, parent: Path) -> Path:
    """A copy of the model directory `source` under `parent`, keeping its name (which validation checks)."""
    target = parent / source.parent.name / source.name
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("python_env.tar.gz"))
    return target


class Copies(list[Path]):
    """The copies of SOURCES, in order (shown short in hypothesis' reports)."""

    def __repr__(self) -> str:
        return f"<copies of {len(self)} model directories>"


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> Copies:
    """A copy of every source, each file restored after the example that mutates it."""
    parent = tmp_path_factory.mktemp("models")
    return Copies(_copy(source, parent) for source in SOURCES)


@contextlib.contextmanager
def written(path: Path, data: bytes) -> Iterator[Path]:
    """`path` holding `data` for the duration, then what it held before (or nothing)."""
    before = path.read_bytes() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    try:
        yield path
    finally:
        if before is None:
            path.unlink()
        else:
            path.write_bytes(before)


# --- What an allowed outcome looks like. ---------------------------------------------------------------


def assert_located(diagnostic: Diagnostic, inside: Path) -> None:
    """A diagnostic names a path inside `inside`, a sane position, and a printable message."""
    assert diagnostic.path == inside or diagnostic.path.is_relative_to(inside), diagnostic
    assert diagnostic.line is None or diagnostic.line >= 1, diagnostic
    assert diagnostic.column is None or (diagnostic.line is not None and diagnostic.column >= 1), diagnostic
    assert diagnostic.message.strip(), diagnostic
    str(diagnostic).encode("utf-8")  # printable: no lone surrogate from the input


def _protobuf_refuses(data: bytes) -> bool:
    """Whether Triton's own parser (protobuf's text format) refuses `data` as a ModelConfig."""
    try:
        text_format.Parse(data.decode("utf-8"), ModelConfig())
    except (UnicodeDecodeError, text_format.ParseError, ValueError):  # ValueError: an enum past 32 bits
        return True
    return False


def assert_report(report: ModelReport, model_dir: Path, mutated_file: Path, data: bytes) -> None:
    """The report of a model directory with one mutated file: located diagnostics, a JSON form, and a
    config.pbtxt protobuf refuses reported at that file with a line."""
    for diagnostic in report.diagnostics:
        assert_located(diagnostic, model_dir)
    json.dumps(report.to_json())
    is_triton_config = mutated_file.parent in ModelDir(model_dir).triton_model_dirs()
    if mutated_file.name == "config.pbtxt" and is_triton_config and _protobuf_refuses(data):
        refused = [d for d in report.diagnostics if d.path == mutated_file and d.rule.startswith("config-")]
        assert refused and refused[0].line is not None, report.diagnostics


@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")  # in the mutated files
@FUZZ
@given(target=st.sampled_from(TARGETS), data=st.data())
def test_validate_reports_every_mutated_file(
    copies: Copies, target: tuple[int, str], data: st.DataObject
) -> None:
    index, name = target
    model_dir = copies[index]
    original = (SOURCES[index] / name).read_bytes()
    mutations = (
        json_mutated(original.decode()) | mutated(original) if name.endswith(".json") else mutated(original)
    )
    mutation = data.draw(mutations, label="bytes")
    with written(model_dir / name, mutation) as path:
        assert_report(validate_model(ModelDir(model_dir)), model_dir, path, mutation)


# --- The case loader. ----------------------------------------------------------------------------------


class CaseModel:
    """A scratch model directory to load one case file in, with the Triton models it calls."""

    def __init__(self, path: Path, triton_models: dict[str, TritonModel], top: str) -> None:
        self.path, self.triton_models, self.top = path, triton_models, top

    def load(self, name: str, data: bytes) -> bool:
        """Load `data` as the case file `name`: whether it loads (as one case), else that the CaseError
        is located in it."""
        with written(self.path / name, data) as path:
            try:
                cases = load_cases(self.path, self.triton_models, self.top)
            except CaseError as error:
                assert error.diagnostics
                for diagnostic in error.diagnostics:
                    assert_case_diagnostic(diagnostic, path, data)
                return False
        assert [case.path for case in cases] == [path]
        return True


@pytest.fixture(scope="module")
def case_models(copies: Copies, tmp_path_factory: pytest.TempPathFactory) -> dict[int, CaseModel]:
    """For each source with cases: an empty model directory (but for the cases' payload files) and the
    Triton models of the source, so that one case file is loaded at a time."""
    parent = tmp_path_factory.mktemp("cases")
    found = {}
    for index in sorted({index for index, _ in CASE_FILES}):
        source = copies[index]
        scratch = parent / source.name
        shutil.copytree(source / "tests", scratch / "tests", ignore=shutil.ignore_patterns("*.json"))
        triton_models = validate_model(ModelDir(source)).triton_models
        found[index] = CaseModel(scratch, triton_models, top_model(triton_models))
    return found


def _parses_as_json(data: bytes) -> bool:
    """Whether `data` is UTF-8 JSON that Python reads."""
    try:
        json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


def assert_case_diagnostic(diagnostic: Diagnostic, path: Path, data: bytes) -> None:
    """A case problem is at the case file, and at a line of it where the file is JSON."""
    assert_located(diagnostic, path)
    assert diagnostic.path == path and diagnostic.rule == "case", diagnostic
    if _parses_as_json(data):
        assert diagnostic.line is not None and diagnostic.column is not None, diagnostic
        assert diagnostic.line <= data.count(b"\n") + 1, diagnostic


@FUZZ
@given(target=st.sampled_from(CASE_FILES), data=st.data())
def test_case_loader_locates_every_problem_in_a_mutated_case(
    case_models: dict[int, CaseModel], target: tuple[int, str], data: st.DataObject
) -> None:
    index, name = target
    original = (SOURCES[index] / name).read_bytes()
    mutation = data.draw(json_mutated(original.decode()) | mutated(original), label="bytes")
    case_models[index].load(name, mutation)


# The values of each datatype that a case may hold (NaN and infinities included for floats).
ELEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "BOOL": st.booleans(),
    "BYTES": st.text(max_size=6),
    **{
        name: st.floats(-6e4, 6e4) | st.sampled_from([math.nan, math.inf])
        for name in ("FP16", "FP32", "FP64")
    },
    **{
        name: st.integers(int(np.iinfo(kind).min), int(np.iinfo(kind).max))
        for name, kind in DATATYPES.items()
        if name[0] in "IU"
    },
}


@st.composite
def tensors(
    draw: st.DrawFn, spec: ModelInput | ModelOutput, batch: list[int], output: bool
) -> dict[str, Any]:
    """A tensor that fits `spec` (the batch size first where the model batches), as a case writes it."""
    shape = batch + [draw(st.integers(0, 3)) if dim == -1 else dim for dim in spec.dims]
    datatype = kserve_datatype(spec.data_type)
    tensor = {"name": spec.name, "datatype": datatype, "shape": shape}
    size = math.prod(shape)
    tensor["data"] = draw(st.lists(ELEMENTS[datatype], min_size=size, max_size=size))
    if output and draw(st.booleans()):
        tensor["data"] = None if draw(st.booleans()) else tensor["data"]
        tensor["tolerance"] = {"absolute": draw(st.floats(0, 1)), "relative": draw(st.floats(0, 1))}
    return tensor


@st.composite
def valid_cases(draw: st.DrawFn, triton_models: dict[str, TritonModel], top: str) -> dict[str, Any]:
    """A case the loader accepts: a request to one of the Triton models, shaped by its config."""
    name = draw(st.sampled_from(sorted(triton_models)))
    config = triton_models[name].config
    batch = [draw(st.integers(1, min(config.max_batch_size, 3)))] if config.max_batch_size > 0 else []
    inputs = [spec for spec in config.input if not spec.optional or draw(st.booleans())]
    outputs = draw(
        st.lists(st.sampled_from(list(config.output)), min_size=1, unique_by=lambda spec: spec.name)
    )
    document = {
        "description": draw(st.text(max_size=8)),
        "inputs": [draw(tensors(spec, batch, output=False)) for spec in inputs],
        "outputs": [draw(tensors(spec, batch, output=True)) for spec in outputs],
    }
    return document if name == top and draw(st.booleans()) else {"model": name, **document}


@FUZZ
@given(index=st.sampled_from(sorted({index for index, _ in CASE_FILES})), data=st.data())
def test_case_loader_locates_every_problem_in_a_generated_case(
    case_models: dict[int, CaseModel], index: int, data: st.DataObject
) -> None:
    model = case_models[index]
    text = json.dumps(data.draw(valid_cases(model.triton_models, model.top), label="case"), indent=1)
    if data.draw(st.booleans(), label="mutate"):
        model.load("tests/cases/generated.json", data.draw(json_mutated(text) | mutated(text.encode())))
    else:
        assert model.load("tests/cases/generated.json", text.encode()), "a case that fits the config loads"


# --- The packager.toml loader. -------------------------------------------------------------------------

TOML_LOCATION = re.compile(r"packager\.toml:(?P<line>[0-9]+)(:(?P<column>[0-9]+))?: \S")


@pytest.fixture(scope="module")
def config_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for packager.toml, with the public key the repository's file names when uncommented."""
    root = tmp_path_factory.mktemp("root")
    (root / "keys").mkdir()
    (root / "keys" / "release.pub").write_text("a public key\n")
    return root


def _toml_parses(data: bytes) -> bool:
    """Whether `data` is UTF-8 TOML that tomllib reads (after the newline translation the loader does)."""
    try:
        tomllib.loads(data.decode("utf-8").replace("\r\n", "\n"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


def load_packager_toml(root: Path, data: bytes) -> Config | None:
    """Load `data` as root/packager.toml: the config, or None after checking its ConfigError is located
    (`packager.toml:line:col: ...` wherever the file is TOML)."""
    with written(root / "packager.toml", data), contextlib.chdir(root):
        try:
            return load_config(root)
        except ConfigError as error:
            message = str(error)
    message.encode("utf-8")
    assert message.startswith("packager.toml:"), message
    if _toml_parses(data):
        located = TOML_LOCATION.match(message)
        assert located and located["column"], message
        lines = data.decode("utf-8").replace("\r\n", "\n").split("\n")
        assert int(located["line"]) <= len(lines), message
        assert int(located["column"]) <= len(lines[int(located["line"]) - 1]) + 1, message
    return None


@FUZZ
@given(data=st.data())
def test_config_loader_locates_every_problem_in_a_mutated_packager_toml(
    config_root: Path, data: st.DataObject
) -> None:
    original = (REPO / "packager.toml").read_bytes()
    original = original.replace(b"# [signing]\n# public_key", b"[signing]\npublic_key")
    load_packager_toml(config_root, data.draw(mutated(original), label="bytes"))


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes, which TOML shares, and DEL, which TOML wants escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(key: str) -> str:
    """`key` bare where TOML allows it, else quoted."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def toml_value(value: Any) -> str:
    """`value` as a TOML value (inline tables and arrays, strings in JSON's escapes that TOML shares)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{ " + ", ".join(f"{_toml_key(key)} = {toml_value(item)}" for key, item in value.items()) + " }"


def toml_document(document: dict[str, Any], table: tuple[str, ...] = ()) -> str:
    """`document` as TOML: its tables (two levels deep) as [headers], the rest inline."""
    nested = len(table) < 2
    lines = [f"[{'.'.join(_toml_key(key) for key in table)}]"] if table else []
    lines += [
        f"{_toml_key(key)} = {toml_value(value)}"
        for key, value in document.items()
        if not (nested and isinstance(value, dict))
    ]
    for key, value in document.items():
        if nested and isinstance(value, dict):
            lines.append(toml_document(value, (*table, key)))
    return "\n".join(lines) + "\n"


TOML_SCALARS = st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=8)


def _toml_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Arrays and tables of `children`."""
    return st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)


TOML_VALUES = st.recursive(TOML_SCALARS, _toml_containers, max_leaves=8)


RUNTIME_NAMES = st.sampled_from(["local", "ngc-24-10", "a.b", "x y", "é", "1"]) | st.text(
    min_size=1, max_size=4
)
TEXTS = st.text(max_size=8)


@st.composite
def runtimes(draw: st.DrawFn) -> dict[str, Any]:
    """A [runtime.NAME] table the loader accepts (only triton_version and python are needed)."""
    table = {"triton_version": "2.51.0", "python": draw(st.sampled_from(["3.11", "3.10"]))}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "description": TEXTS,
        "server_package": st.sampled_from(["nvidia-pytriton==0.7.0"]),
        "image": TEXTS,
        "launcher": st.sampled_from(LAUNCHERS.names()),
        "env_builder": st.sampled_from(ENV_BUILDERS.names()),
        "shm_size": st.sampled_from(["256m", "1g", "64"]),
        "platform": st.sampled_from(["x86_64-manylinux_2_28"]),
        "channels": st.lists(st.sampled_from(["local", "conda-forge"]), min_size=1, max_size=2),
        "constraints": st.lists(
            st.fixed_dictionaries(
                {"requirement": st.sampled_from(["numpy<2", "protobuf<6"]), "reason": TEXTS}
            ),
            max_size=2,
        ),
    }
    table.update(draw(st.fixed_dictionaries({}, optional=optional)))
    if table.get("launcher") == "container" and not table.get("image"):
        table["server_package"] = "nvidia-pytriton==0.7.0"
    return table


@st.composite
def valid_packager_tomls(draw: st.DrawFn) -> dict[str, Any]:
    """What a packager.toml may hold: every table optional, every value of its type."""
    names = draw(st.lists(RUNTIME_NAMES, max_size=2, unique=True))
    uris = st.sampled_from(["s3://bucket/models", "file:dist/stores", "file:///srv/models"])
    optional = {
        "packager": st.fixed_dictionaries(
            {}, optional={"runtime": st.sampled_from(["auto", "local", *names])}
        ),
        "stores": st.fixed_dictionaries(
            {},
            optional={
                "staging": uris,
                "production": uris,
                "production_branches": st.lists(
                    st.sampled_from(["main", "release/1"]), min_size=1, max_size=2
                ),
            },
        ),
        "signing": st.just({"public_key": "keys/release.pub"}),
    }
    runtime_tables = {"runtime": st.fixed_dictionaries({name: runtimes() for name in names})} if names else {}
    return draw(st.fixed_dictionaries(runtime_tables, optional=optional))


# Values a packager.toml key may be given by mistake, besides any TOML value of another type.
NEAR_MISSES = st.sampled_from(
    [
        "3",
        "３.11",
        "1x",
        "nope",
        "",
        "http://x",
        "s3://[b",
        "s3://b\uff03",
        "numpy<<2",
        [],
        [""],
        ["main", ""],
        {},
    ]
)


@st.composite
def toml_mutated(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any]:
    """`document` with one value replaced by a near miss or a value of another type, removed, or given an
    unknown sibling key."""
    document = copy.deepcopy(document)
    path = draw(st.sampled_from(list(_json_paths(document))))
    if not path:
        return {**document, draw(st.text(max_size=4)): draw(TOML_VALUES)}
    parent = _at(document, path[:-1])
    operation = draw(st.sampled_from(["replace", "remove", "sibling"]))
    if operation == "replace" or not isinstance(parent, dict):
        parent[path[-1]] = draw(NEAR_MISSES | TOML_VALUES)
    elif operation == "remove":
        del parent[path[-1]]
    else:
        parent[draw(st.text(max_size=4))] = draw(TOML_VALUES)
    return document


@FUZZ
@given(document=valid_packager_tomls(), data=st.data())
def test_config_loader_locates_every_problem_in_a_generated_packager_toml(
    config_root: Path, document: dict[str, Any], data: st.DataObject
) -> None:
    if data.draw(st.booleans(), label="mutate"):
        load_packager_toml(config_root, toml_document(data.draw(toml_mutated(document))).encode())
    else:
        assert load_packager_toml(config_root, toml_document(document).encode()), "a valid file loads"


@FUZZ
@given(document=st.dictionaries(st.text(max_size=4), TOML_VALUES, max_size=4))
def test_toml_positions_find_every_value_where_it_is_written(document: dict[str, Any]) -> None:
    text = toml_document(document)
    positions = TomlPositions(text)
    lines = text.split("\n")
    for path in list(_json_paths(document))[1:]:
        value = _at(document, path)
        line, column = positions.value_at(*path) or (0, 0)
        written = lines[line - 1][column - 1 :] if line else ""
        if not isinstance(value, (dict, list)):
            assert written.startswith(toml_value(value)), (path, line, column)


# --- Regressions: each crash the fuzzing found, by its exact input. --------------------------------------

DIGITS, CHURN = 0, 1  # indexes into SOURCES


def _report(
    copies: Copies, index: int, name: str, text: str | bytes
) -> list[tuple[str, int | None, int | None, str]]:
    """The diagnostics of a copied source with `name` holding `text`: (file, line, column, message)."""
    model_dir = copies[index]
    with written(model_dir / name, text.encode() if isinstance(text, str) else text):
        report = validate_model(ModelDir(model_dir))
    return [
        (d.path.relative_to(model_dir).as_posix(), d.line, d.column, d.message) for d in report.diagnostics
    ]


def _case_problems(model: CaseModel, text: str) -> list[tuple[int | None, int | None, str]]:
    """The located problems of `text` as digits' or churn's only case file."""
    with written(model.path / "tests/cases/regression.json", text.encode()):
        with pytest.raises(CaseError) as raised:
            load_cases(model.path, model.triton_models, model.top)
    return [(d.line, d.column, d.message) for d in raised.value.diagnostics]


def _config_error(root: Path, text: str) -> str:
    """The ConfigError of `text` as root/packager.toml."""
    with written(root / "packager.toml", text.encode()), contextlib.chdir(root):
        with pytest.raises(ConfigError) as raised:
            load_config(root)
    return str(raised.value)


CASE = (  # one input and one output of digits, the parts under test filled in
    '{{"inputs": [{{"name": "IMAGE", "datatype": "BYTES", "shape": {shape}, {payload}}}],\n'
    ' "outputs": [{{"name": "LABEL", "datatype": "INT64", "shape": [1, 1], "data": {label}}}]}}'
)


def _position(text: str, at: str) -> tuple[int, int]:
    """1-based line and column where `at` first occurs in `text`."""
    offset = text.index(at)
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)


@pytest.mark.parametrize(
    "shape, payload, label, at, message",
    [
        # json.loads raised ValueError (Python's limit on the digits of an int), not JSONDecodeError.
        (
            "[1, 1]",
            '"data": ["x"]',
            "9" * 5000,
            "9999",
            "holds an integer of more than 4300 digits; no tensor holds one",
        ),
        # numpy raised ValueError reshaping [] to [0, 2**70] (a size past what it indexes).
        (
            f"[0, {2**70}]",
            '"data": []',
            "[3]",
            "[0, ",
            f"inputs[0] shape [0, {2**70}] has a size over 16777216, too large for a case",
        ),
        # A lone surrogate escape raised UnicodeEncodeError when BYTES data was encoded.
        (
            "[1, 1]",
            '"data": ["\\ud800"]',
            "[3]",
            '["\\ud800"]',
            "inputs[0] data does not fit BYTES: '\\ud800' holds a lone surrogate escape such as \\ud800",
        ),
        # A file name too long for the file system raised OSError from Path.is_file.
        (
            "[1, 1]",
            f'"files": ["{"9" * 5000}"]',
            "[3]",
            '"999',
            f"inputs[0] file '{'9' * 36}... cannot be read: File name too long",
        ),
    ],
    ids=["integer-of-5000-digits", "shape-past-numpy", "lone-surrogate", "file-name-too-long"],
)
def test_regression_case_file(
    case_models: dict[int, CaseModel], shape: str, payload: str, label: str, at: str, message: str
) -> None:
    text = CASE.format(shape=shape, payload=payload, label=label)
    assert _case_problems(case_models[DIGITS], text) == [(*_position(text, at), message)]


def _replaced(index: int, name: str, old: str, new: str) -> str:
    """The source file `name` with its first `old` replaced by `new`."""
    text = (SOURCES[index] / name).read_text()
    assert old in text
    return text.replace(old, new, 1)


CHURN_CONFIG, CHURN_POINTER = "churn/config.pbtxt", "churn/1/model.onnx.dvc"
CHURN_REQUIREMENTS = (SOURCES[CHURN] / "requirements.txt").read_text()
TOO_LONG = "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits"
ENUM = "is not a DataType (TYPE_INVALID, TYPE_BOOL, TYPE_UINT8, TYPE_UINT16, TYPE_UINT32, TYPE_UINT64, ...)"


@pytest.mark.parametrize(
    "index, name, text, expected",
    [
        # protobuf's parser raised ValueError storing an enum number past 32 bits (not its ParseError).
        (
            CHURN,
            CHURN_CONFIG,
            _replaced(CHURN, CHURN_CONFIG, "TYPE_FP32", "1" + "0" * 30),
            [
                (
                    CHURN_CONFIG,
                    10,
                    16,
                    f"does not parse as a Triton ModelConfig: 1{'0' * 30} is out of range for an enum "
                    "(write one of its names)",
                )
            ],
        ),
        # protobuf keeps an enum number it has no name for: DataType.Name and Kind.Name raised ValueError.
        (
            CHURN,
            CHURN_CONFIG,
            _replaced(CHURN, CHURN_CONFIG, "TYPE_FP32", "99") + "instance_group [ { kind: 7 } ]\n",
            [
                (CHURN_CONFIG, 10, 16, f"data_type 99 {ENUM}; write one of its names"),
                (
                    CHURN_CONFIG,
                    34,
                    26,
                    "kind 7 is not a Kind (KIND_AUTO, KIND_GPU, KIND_CPU, KIND_MODEL); "
                    "write one of its names",
                ),
            ],
        ),
        # ...and the ensemble's type check named the step's data type with DataType.Name.
        (
            DIGITS,
            "preprocess/config.pbtxt",
            _replaced(DIGITS, "preprocess/config.pbtxt", "TYPE_FP32", "99"),
            [
                (
                    "digits/config.pbtxt",
                    35,
                    40,
                    "ensemble tensor 'pixels' is 99 as output 'PIXELS' of model 'preprocess' "
                    "but TYPE_FP32 as input 'PIXELS' of model 'classifier'",
                ),
                ("preprocess/config.pbtxt", 15, 16, f"data_type 99 {ENUM}; write one of its names"),
            ],
        ),
        # Python's compiler gave a SyntaxError at column 0, which was reported as model.py:1:0.
        (
            DIGITS,
            "classifier/1/model.py",
            "9" * 5000,
            [
                (
                    "classifier/1/model.py",
                    1,
                    None,
                    f"does not compile: {TOO_LONG}; use sys.set_int_max_str_digits() to increase the limit - "
                    "Consider hexadecimal for huge integer literals to avoid decimal conversion limits.",
                )
            ],
        ),
        # int() raised ValueError on a version of 5000 digits.
        (
            CHURN,
            "model_version.txt",
            "1" * 5000,
            [
                (
                    "model_version.txt",
                    1,
                    1,
                    "version 11111111111111111111... is too large: a version has at most 18 digits",
                )
            ],
        ),
        # PyYAML's constructors raised ValueError (an impossible date, !!int of a word, 5000 digits) and
        # its composer RecursionError.
        (
            CHURN,
            CHURN_POINTER,
            _replaced(CHURN, CHURN_POINTER, "md5: ", "md5: 2001-13-45 #"),
            [(CHURN_POINTER, 2, 8, "is not a valid DVC pointer (YAML: month must be in 1..12)")],
        ),
        (
            CHURN,
            CHURN_POINTER,
            _replaced(CHURN, CHURN_POINTER, "size: ", "size: !!int abc #"),
            [
                (
                    CHURN_POINTER,
                    3,
                    9,
                    "is not a valid DVC pointer (YAML: invalid literal for int() with base 10: 'abc')",
                )
            ],
        ),
        (
            CHURN,
            CHURN_POINTER,
            _replaced(CHURN, CHURN_POINTER, "size: ", "size: " + "1" * 5000 + " #"),
            [(CHURN_POINTER, 3, 9, f"is not a valid DVC pointer (YAML: {TOO_LONG})")],
        ),
        (
            CHURN,
            CHURN_POINTER,
            "outs: " + "[" * 5000 + "]" * 5000,
            [(CHURN_POINTER, None, None, "is not a valid DVC pointer (YAML: nests too deeply)")],
        ),
        # A bad requirements line was reported without its line, after the whole path and line again.
        (
            CHURN,
            "requirements.txt",
            CHURN_REQUIREMENTS + "-e .\n",
            [
                (
                    "requirements.txt",
                    CHURN_REQUIREMENTS.count("\n") + 1,
                    1,
                    "-e is not supported; list every package in this file",
                )
            ],
        ),
        # A lock that is not UTF-8 was reported as a problem of requirements.txt.
        (
            CHURN,
            "requirements.lock",
            b"\xff",
            [
                (
                    "requirements.lock",
                    None,
                    None,
                    "is not UTF-8 text (byte 0): run `packager lock churn` and commit both files",
                )
            ],
        ),
    ],
    ids=[
        "enum-past-32-bits",
        "enum-number-without-a-name",
        "ensemble-type-without-a-name",
        "syntax-error-at-column-0",
        "version-of-5000-digits",
        "dvc-impossible-date",
        "dvc-int-tag-on-a-word",
        "dvc-integer-of-5000-digits",
        "dvc-nested-5000-deep",
        "requirement-line",
        "lock-not-utf8",
    ],
)
def test_regression_model_file(
    copies: Copies,
    index: int,
    name: str,
    text: str | bytes,
    expected: list[tuple[str, int | None, int | None, str]],
) -> None:
    files = {file for file, *_ in expected}
    assert [problem for problem in _report(copies, index, name, text) if problem[0] in files] == expected


UNKNOWN = "the top level has unknown key {!r} (allowed: endpoint, packager, runtime, signing, stores)"
NOT_A_STORE = "[stores] staging 's3://[b' is not a store URI (Invalid IPv6 URL): give s3://bucket/prefix, file:///dir or file:dir"


@pytest.mark.parametrize(
    "text, error",
    [
        # tomllib raised ValueError (Python's limit on the digits of an int) and RecursionError.
        ("[stores]\nstaging = " + "1" * 5000, "2:11: not valid TOML: an integer of more than 4300 digits"),
        (
            "[stores]\nstaging = " + "[" * 5000 + "]" * 5000,
            " not valid TOML: its arrays or tables nest too deeply",
        ),
        # TomlPositions raised RuntimeError (a StopIteration) reading the empty quoted key "".
        ('"" = 1\n', "1:1: " + UNKNOWN.format("")),
        # urlparse raised ValueError on a bracketed host that is not an IPv6 address.
        ('[stores]\nstaging = "s3://[b"\n', "2:11: " + NOT_A_STORE),
        # TomlPositions read \" as the end of a string, so the next key was never found: `packager.toml:1:`.
        ('packager = [{ "\\"" = "" }]\nunknown = []\n', "2:1: " + UNKNOWN.format("unknown")),
    ],
    ids=[
        "integer-of-5000-digits",
        "array-nested-5000-deep",
        "empty-quoted-key",
        "bracketed-host",
        "escaped-quote",
    ],
)
def test_regression_packager_toml(config_root: Path, text: str, error: str) -> None:
    assert _config_error(config_root, text) == f"packager.toml:{error}"
