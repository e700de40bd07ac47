"""The multi-model endpoint emulator through the real parts: boto3's `sagemaker-runtime` client against the
HTTP front, real Triton, and the example models' artifacts (digits and churn) in a moto S3 store. The
emulator's own logic (the LRU order, the memory limit, the load deadline, concurrent first requests, failed
loads, what a TargetModel in a file store may name) is tested on fake servers in tests/fast/test_emulator.py.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from packager.artifacts import MANIFEST, read_manifest, verify_artifact
from packager.endpoint import BINARY_JSON, ColdStart, Emulator, emulating, fronted, parse_size
from packager.release.stores import Store
from packager.release.stores.s3 import S3Store
from packager.settings import DEFAULT_RUNTIME, Runtime
from packager.triton import Server
from packager.triton.container import ContainerLauncher
from packager.triton.local import LocalLauncher
from tests.conftest import S3_CREDENTIALS, RunPackager, child_environment, runtime_client, s3_client

ROOT = Path(__file__).parent.parent
MODELS = ("digits", "churn")
STAGED_CHURN = "feature-mme/0123456789ab/churn_1.tar.gz"  # a staging store's layout: <branch>/<commit12>/
DIGITS_CASE = ROOT / "models" / "digits" / "tests" / "cases" / "digit_0_heldout001_8px.json"
Call = Callable[[Any, str], dict[str, dict[str, Any]]]
CHURN_CASE = ROOT / "models" / "churn" / "tests" / "cases" / "customer_0.json"


def _artifact(name: str, out: Path) -> Path:
    """dist/'s artifact of the example model `name` when it verifies, else one built now into `out`."""
    version = (ROOT / "models" / name / "model_version.txt").read_text().strip()
    built = ROOT / "dist" / f"{name}_{version}.tar.gz"
    if built.is_file() and not verify_artifact(built)[1]:
        return built
    subprocess.run(
        [sys.executable, "-m", "packager", "build", name, "--out", str(out)],
        cwd=ROOT,
        env=child_environment(),
        check=True,
        timeout=900,
    )
    return out / f"{name}_{version}.tar.gz"


def _forged(original: Path, out: Path) -> Path:
    """An archive with `original`'s manifest and a top-level config.pbtxt that is not the one it lists."""
    manifest, raw, _ = read_manifest(original)
    forged = out / "forged.tar.gz"
    with tarfile.open(forged, "w:gz") as tar:
        for name, data in ((MANIFEST, raw), (f"{manifest['top_model']}/config.pbtxt", b'name: "evil"\n')):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return forged


@pytest.fixture(scope="module")
def store(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A production-like bucket holding digits_1 and churn_1 at its root, churn_1 again under a staging
    prefix, and a tampered churn_1."""
    out = tmp_path_factory.mktemp("mme-dist")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**S3_CREDENTIALS, "AWS_ENDPOINT_URL_S3": moto_endpoint}.items():
            patch.setenv(name, value)
        s3_client(moto_endpoint).create_bucket(Bucket="mme-production")
        bucket = S3Store.from_uri("s3://mme-production/models")
        for name in MODELS:
            path = _artifact(name, out)
            bucket.put_new(path.name, path, {"sha256": verify_artifact(path)[0].sha256})
        bucket.copy_new(bucket, "churn_1.tar.gz", key=STAGED_CHURN, metadata={})
        forged = _forged(_artifact("churn", out), out)
        bucket.put_new("tampered/churn_1.tar.gz", forged, {})
        yield bucket
        bucket.close()


@pytest.fixture(scope="module")
def emulator(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One emulator (its pool of servers) for the module; when it stops, nothing of it is left."""
    launcher = LocalLauncher.for_runtime(DEFAULT_RUNTIME)
    log_path = tmp_path_factory.mktemp("mme-logs") / "mme.log"
    with emulating(store, launcher, log_path=log_path) as running:
        yield running
        slots, downloads = list(running.servers.slots), running.downloads
    assert not downloads.exists(), "the downloads are removed"
    assert not [slot for slot in slots if slot.repository.exists()], "the repositories are removed"
    assert not [slot for slot in slots if slot.server.alive()], "the servers are stopped"


@pytest.fixture(scope="module")
def client(emulator: Emulator) -> Iterator[Any]:
    """boto3's sagemaker-runtime client on the emulator's HTTP front."""
    with fronted(emulator) as url:
        yield runtime_client(url)


def _digits_request(binary_outputs: bool = False) -> tuple[bytes, str]:
    """digit_0's case as SageMaker's Triton binary+json body (its PNG as binary tensor data)."""
    case = json.loads(DIGITS_CASE.read_text())
    png = (DIGITS_CASE.parent / case["inputs"][0]["files"][0]).read_bytes()
    image = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[png]], dtype=np.object_), binary_data=True)
    outputs = [
        httpclient.InferRequestedOutput(name, binary_data=binary_outputs) for name in ("LABEL", "CONFIDENCE")
    ]
    body, header_size = httpclient.InferenceServerClient.generate_request_body([image], outputs=outputs)
    return body, f"{BINARY_JSON};json-header-size={header_size}"


def _churn_request() -> bytes:
    """customer_0's case as a KServe v2 JSON request."""
    features = json.loads(CHURN_CASE.read_text())["inputs"][0]
    flat = np.asarray(features["data"], dtype=np.float32).ravel().tolist()
    return json.dumps({"inputs": [{**features, "data": flat}]}).encode()


def _outputs(response: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert response["ContentType"] == "application/json"
    return {output["name"]: output for output in json.loads(response["Body"].read())["outputs"]}


def _digits(client: Any, target: str = "digits_1.tar.gz") -> dict[str, dict[str, Any]]:
    body, content_type = _digits_request()
    return _outputs(
        client.invoke_endpoint(EndpointName="mme", TargetModel=target, ContentType=content_type, Body=body)
    )


def _churn(client: Any, target: str = "churn_1.tar.gz") -> dict[str, dict[str, Any]]:
    return _outputs(
        client.invoke_endpoint(
            EndpointName="mme", TargetModel=target, ContentType="application/json", Body=_churn_request()
        )
    )


def _cold_starts(emulator: Emulator, target: str) -> list[ColdStart]:
    return [cold for cold in emulator.cold_starts if cold.target == target]


def _served_models(server: Server, ready_only: bool = False) -> list[str]:
    """The models a server's repository index lists (all of them, or those loaded and ready)."""
    request = urllib.request.Request(
        f"http://{server.endpoints.http}/v2/repository/index", data=b"{}", method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        index = json.loads(response.read())
    return [str(entry["name"]) for entry in index if not ready_only or entry.get("state") == "READY"]


def _cold_then_warm(
    client: Any, emulator: Emulator, target: str, call: Call
) -> list[dict[str, dict[str, Any]]]:
    """Two requests for a target not loaded yet: the answers, once the second is known not to load again."""
    started = time.monotonic()
    answers = [call(client, target)]
    cold_round_trip = time.monotonic() - started
    started = time.monotonic()
    answers.append(call(client, target))
    warm_round_trip = time.monotonic() - started
    (cold,) = _cold_starts(emulator, target)  # the second request did not load again
    assert cold.first_inference_s is not None and cold.load_s > 0 and cold.bytes > 0
    assert target in emulator.loaded_targets()
    print(f"{cold.line()}; round trip: cold {cold_round_trip:.2f} s, warm {warm_round_trip:.3f} s")
    return answers


def test_cold_start_then_warm(client: Any, emulator: Emulator) -> None:
    for digits in _cold_then_warm(client, emulator, "digits_1.tar.gz", _digits):
        assert digits["LABEL"]["data"] == [0] and digits["CONFIDENCE"]["data"][0] > 0.9
    for churn in _cold_then_warm(client, emulator, "churn_1.tar.gz", _churn):
        assert churn["PROBABILITY"]["shape"] == [1, 1]
        assert churn["PROBABILITY"]["data"] == pytest.approx([0.038451], abs=1e-5)


def test_the_emulator_serves_through_the_container_launcher(
    store: Store, container_runtime: Runtime, tmp_path: Path
) -> None:
    """The same emulator in front of Triton in its container (the image production runs)."""
    launcher = ContainerLauncher.for_runtime(container_runtime)
    with (
        emulating(store, launcher, log_path=tmp_path / "mme-container.log") as emulator,
        fronted(emulator) as url,
    ):
        churn = _churn(runtime_client(url))
        assert churn["PROBABILITY"]["data"] == pytest.approx([0.038451], abs=1e-5)
        assert [cold.target for cold in emulator.cold_starts] == ["churn_1.tar.gz"]


def test_a_binary_answer_comes_back_as_sagemaker_tritons_binary_json(client: Any) -> None:
    body, content_type = _digits_request(binary_outputs=True)
    response = client.invoke_endpoint(
        EndpointName="mme", TargetModel="digits_1.tar.gz", ContentType=content_type, Body=body
    )
    kind, _, header_size = response["ContentType"].partition(";json-header-size=")
    assert kind == BINARY_JSON
    result = httpclient.InferenceServerClient.parse_response_body(
        response["Body"].read(), header_length=int(header_size)
    )
    assert result.as_numpy("LABEL").tolist() == [[0]]


def test_a_target_that_does_not_exist_is_a_validation_error(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationError, match="no model nope_1.tar.gz in s3://"):
        _churn(client, "nope_1.tar.gz")
    with pytest.raises(client.exceptions.ValidationError, match="needs a TargetModel"):
        client.invoke_endpoint(EndpointName="mme", ContentType="application/json", Body=_churn_request())


def _refusal(client: Any, target: str) -> dict[str, Any]:
    """The error boto3 raised for a request naming `target`: its code, message and HTTP status."""
    with pytest.raises(client.exceptions.ValidationError) as raised:
        _churn(client, target)
    response = raised.value.response
    return {**response["Error"], "status": response["ResponseMetadata"]["HTTPStatusCode"]}


def test_a_target_model_is_a_key_inside_the_s3_store(
    client: Any, emulator: Emulator, moto_endpoint: str
) -> None:
    """`..` never leaves the store's prefix for the rest of its bucket, and the answer is the same
    whether or not an object is there."""
    s3 = s3_client(moto_endpoint)
    target, outside = "../outside/churn_1.tar.gz", "outside/churn_1.tar.gz"
    absent = _refusal(client, target)
    source = {"Bucket": "mme-production", "Key": "models/churn_1.tar.gz"}
    s3.copy_object(Bucket="mme-production", Key=outside, CopySource=source)
    try:
        assert _refusal(client, target) == absent, "no existence oracle"
    finally:
        s3.delete_object(Bucket="mme-production", Key=outside)
    assert absent["status"] == 400 and "is not a key in the store" in absent["Message"]
    assert target not in emulator.loaded_targets() and not _cold_starts(emulator, target)


def test_a_body_triton_refuses_is_a_model_error(client: Any) -> None:
    body = json.dumps({"inputs": [{"name": "WRONG", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}]})
    with pytest.raises(client.exceptions.ModelError) as raised:
        client.invoke_endpoint(
            EndpointName="mme", TargetModel="churn_1.tar.gz", ContentType="application/json", Body=body
        )
    assert raised.value.response["OriginalStatusCode"] == 400
    assert "WRONG" in raised.value.response["OriginalMessage"]


def _servers_hold(emulator: Emulator) -> list[tuple[list[str], list[str]]]:
    """What each server of the pool has: its repository's entries and the models its index lists."""
    return [
        (sorted(path.name for path in slot.repository.iterdir()), sorted(_served_models(slot.server)))
        for slot in emulator.servers.slots
    ]


def test_a_tampered_artifact_is_refused_and_nothing_of_it_served(client: Any, emulator: Emulator) -> None:
    target = "tampered/churn_1.tar.gz"
    before = _servers_hold(emulator)
    with pytest.raises(client.exceptions.ValidationError, match="does not verify; nothing was run"):
        _churn(client, target)
    assert _servers_hold(emulator) == before, "nothing of it is staged or served"
    assert not list(emulator.downloads.iterdir())
    assert target not in emulator.loaded_targets()


def test_an_evicted_target_leaves_its_server_and_loads_again_on_its_next_request(
    client: Any, emulator: Emulator
) -> None:
    """Eviction through real Triton: what each server loads follows what the emulator holds, and an evicted
    target serves again (the order and the limit, the emulator's own logic: tests/fast/test_emulator.py)."""
    _digits(client)
    _churn(client)  # the most recently used, then digits
    (churn,) = _cold_starts(emulator, "churn_1.tar.gz")
    digits = _cold_starts(emulator, "digits_1.tar.gz")[-1]
    emulator.settings.memory_limit = churn.bytes * 2  # room for two churns, not for digits too
    try:
        assert _churn(client, STAGED_CHURN)["PROBABILITY"]["shape"] == [1, 1]
        assert "digits_1.tar.gz" not in emulator.loaded_targets()
        _assert_served(emulator, emulator.loaded_targets(), 2)  # one artifact twice: a server each
        _churn(client)  # now more recent than the staged churn
        emulator.settings.memory_limit = digits.bytes + churn.bytes
        assert _digits(client)["LABEL"]["data"] == [0], "an evicted target reloads on its next request"
        assert len(_cold_starts(emulator, "digits_1.tar.gz")) == 2
        _assert_served(emulator, emulator.loaded_targets(), 1)  # no name in common
    finally:
        emulator.settings.memory_limit = None


def _assert_served(emulator: Emulator, kept: list[str], servers: int) -> None:
    """Each server loads just the models of the targets it holds, under their own names; a server other
    than the first stops once it holds no target, so `servers` are left."""
    holds = [slot.holds for slot in emulator.servers.slots]
    assert sorted(target for held in holds for target in held) == sorted(kept)
    assert len(holds) == servers
    for slot in emulator.servers.slots:
        names = sorted(name for held in slot.holds.values() for name in held)
        assert sorted(_served_models(slot.server, ready_only=True)) == names


def test_sizes_read_as_people_write_them() -> None:
    assert parse_size("512MiB") == 512 * 1024**2 and parse_size("2GB") == 2 * 10**9
    assert parse_size("1.5k") == 1500 and parse_size("1048576") == 1024**2
    with pytest.raises(Exception, match="is not a size"):
        parse_size("12XB")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--store", "ftp://models", "ftp://models: a store URI is s3://bucket/prefix or file:///dir"),
        ("--memory-limit", "12XB", "'12XB' is not a size"),
    ],
)
def test_bad_input_is_a_clear_error(run_packager: RunPackager, option: str, value: str, message: str) -> None:
    arguments = {"--store": "file:dist", "--runtime": "local", option: value}
    result = run_packager("mme", "serve", *(item for pair in arguments.items() for item in pair), cwd=ROOT)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_push_measures_the_cold_start_and_holds_it_to_the_budget(
    run_packager: RunPackager, model_repo: Path
) -> None:
    """Through the emulator, before publishing: over packager.toml's budget a push is refused (nothing
    published), or warned about and published with `over_budget = "warn"`."""
    (model_repo / "packager.toml").write_text("[endpoint]\ncold_start_budget = 0.001\n")
    refused = run_packager("push", "fraud", "--branch", "feature/fraud", "--json", cwd=model_repo)
    assert refused.returncode == 1, refused.stderr
    (report,) = json.loads(refused.stdout)["models"]
    assert report["outcome"] is None and report["replay"]["passed"] is True
    assert report["error"].startswith("cold-start check: fraud_1.tar.gz took ")
    assert "over the 0.001 s budget ([endpoint] cold_start_budget in packager.toml)" in report["error"]
    assert report["checked"]["over_budget"] is True, "what the check found is reported with its refusal"
    assert report["checked"]["cold_start"]["budget"] == 0.001
    (model_repo / "packager.toml").write_text('[endpoint]\ncold_start_budget = 0.001\nover_budget = "warn"\n')
    warned = run_packager("push", "fraud", "--branch", "feature/fraud", "--json", cwd=model_repo)
    assert warned.returncode == 0, warned.stderr
    (report,) = json.loads(warned.stdout)["models"]
    assert report["outcome"] == "uploaded" and report["checked"]["over_budget"] is True
    cold = report["checked"]["cold_start"]
    assert cold["target"] == "fraud_1.tar.gz" and cold["budget"] == 0.001
    assert cold["first_inference_s"] > 0 and cold["seconds"] > cold["load_s"] > 0


def test_build_measures_the_cold_start_when_asked(run_packager: RunPackager, model_repo: Path) -> None:
    (model_repo / "packager.toml").write_text("[endpoint]\ncold_start_budget = 0.001\n")
    built = run_packager("build", "fraud", "--cold-start", "--json", cwd=model_repo)
    assert built.returncode == 1, built.stderr
    (record,) = json.loads(built.stdout)["artifacts"]
    assert Path(record["path"]).is_file(), "the artifact is built; its cold start is over the budget"
    assert record["error"].startswith("cold-start check: fraud_1.tar.gz took ")
    assert "so it is refused" in record["error"] and record["checked"]["over_budget"] is True
    (model_repo / "packager.toml").write_text("[endpoint]\ncold_start_budget = 60\n")
    built = run_packager("build", "fraud", "--cold-start", "--json", cwd=model_repo)
    assert built.returncode == 0, built.stderr
    (record,) = json.loads(built.stdout)["artifacts"]
    assert record["checked"]["over_budget"] is False and record["checked"]["cold_start"]["load_s"] > 0
