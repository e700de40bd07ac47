"""Benchmarks of the local Triton runtime, each a ratio against a baseline measured in the same run.

    ./pants run benchmarks/triton_runtime.py [env|start|load|batching|container|replay|relay]...

1. environment build: cold (empty packager cache; pip's own download cache as the machine has it) vs a
   cache hit;
2. server start to ready (no models), against a full `packager replay churn` (start, load, 10 requests);
3. loading the digits model (3 python steps) with the packed env tarball vs the cached unpacked env;
4. churn replay throughput, 8 client processes sending single rows over gRPC, with vs without dynamic
   batching (and the mean batch size Triton executed);
5. the replay loop's parts for digits (median of 3): loading its steps one after another vs at once
   (`load_all`), and at once from an env tree without bytecode vs the cache's compiled one, and the stop's wait until every process of the server's group is reaped, zombies
   included (the sandbox's init lingers as one) vs until none runs; sending its cases to a fresh server
   over HTTP then gRPC vs both side by side (the first requests to each step cost most); then a whole warm `replay digits`, through the library and as a command (against
   `python -c pass`);
6. what model code without a network costs: the server on the machine's network (`network = true`) vs in
   a network namespace of its own behind the socat relays (the default), for churn: start to ready,
   one client's request latency over gRPC, and CLIENTS client processes' throughput.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from benchmarks.timing import timed
from packager.config import load_config
from packager.environments import Environment, ensure_environment, env_builder_for
from packager.modeldir import ModelDir, find_repo_root, load_cases, top_model
from packager.preflight import prepare
from packager.replay import PROTOCOLS, replay_cases, replay_model
from packager.triton import Server, TritonServer, launched, launcher_for, staged_repository
from packager.triton.local import LocalLauncher
from packager.triton.serving import load_all

ROOT = find_repo_root(Path(__file__).parent) or Path.cwd()
RUNTIME = load_config(ROOT).runtime("local")
BUILDER = env_builder_for(RUNTIME)
CHURN, DIGITS = ModelDir(ROOT / "models" / "churn"), ModelDir(ROOT / "models" / "digits")
CLIENTS, SECONDS = 8, 5.0


def one_by_one(server: Server, models: Mapping[str, object]) -> float:
    """Seconds to load each of `models` in name order, one after another (what replay did before
    `load_all`)."""
    return sum(timed(server.load, name) for name in sorted(models))


def row(name: str, baseline: tuple[str, float], measured: tuple[str, float], unit: str = "s") -> None:
    ratio = baseline[1] / measured[1] if measured[1] else float("inf")
    print(
        f"{name:<34} {baseline[0]:>22} {baseline[1]:>9.3f} {unit:<5} {measured[0]:>22} {measured[1]:>9.3f} {unit:<5} {ratio:>8.1f}x"
    )


@contextmanager
def scratch_cache() -> Iterator[None]:
    previous = os.environ.get("PACKAGER_CACHE")
    with tempfile.TemporaryDirectory(prefix="packager-bench-cache-") as cache:
        os.environ["PACKAGER_CACHE"] = cache
        try:
            yield
        finally:
            if previous is None:
                del os.environ["PACKAGER_CACHE"]
            else:
                os.environ["PACKAGER_CACHE"] = previous


def bench_env_build(log_dir: Path) -> None:
    with scratch_cache():
        cold = timed(lambda: ensure_environment(CHURN, RUNTIME, BUILDER))
        hits = [timed(lambda: ensure_environment(CHURN, RUNTIME, BUILDER)) for _ in range(5)]
    row("env build (churn)", ("cold", cold), ("cache hit (median of 5)", statistics.median(hits)))


def bench_server_start(log_dir: Path) -> None:
    launcher = launcher_for(RUNTIME)
    empty = Path(tempfile.mkdtemp(prefix="packager-bench-empty-"))
    starts = []
    for attempt in range(10):
        started = time.perf_counter()
        with launcher.start(empty, log_dir / f"start-{attempt}.log"):
            starts.append(time.perf_counter() - started)
    replay = timed(
        lambda: replay_model(
            CHURN, RUNTIME, builder=BUILDER, launcher=launcher, log_path=log_dir / "replay.log"
        )
    )
    row(
        "server start to ready",
        ("replay churn (all)", replay),
        ("start (median of 10)", statistics.median(starts)),
    )


def bench_load_modes(log_dir: Path) -> None:
    report, environment = prepare(DIGITS, RUNTIME, BUILDER)
    launcher = launcher_for(RUNTIME)
    seconds: dict[str, list[float]] = {"packed": [], "unpacked": []}
    for attempt in range(3):
        for mode in seconds:
            with staged_repository(report, environment, mode) as repository:
                with launcher.start(repository, log_dir / f"load-{mode}-{attempt}.log") as server:
                    seconds[mode].append(one_by_one(server, report.triton_models))
    row(
        "load digits (3 steps + ensemble)",
        ("packed tarball", statistics.median(seconds["packed"])),
        ("unpacked cached env", statistics.median(seconds["unpacked"])),
    )


def _client(endpoint: str, rows: np.ndarray, seconds: float) -> int:
    """One client process: single-row requests, back to back, for `seconds`; returns how many."""
    connection = grpcclient.InferenceServerClient(endpoint)
    features = grpcclient.InferInput("FEATURES", [1, 8], "FP32")
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        features.set_data_from_numpy(rows[count % len(rows)][None, :])
        connection.infer("churn", [features])
        count += 1
    connection.close()
    return count


def throughput(endpoint: str, rows: np.ndarray, seconds: float = SECONDS) -> tuple[float, float]:
    """Requests per second from CLIENTS processes, and the mean batch size Triton executed."""
    before = _counts(endpoint)
    with multiprocessing.get_context("spawn").Pool(CLIENTS) as pool:
        counts = pool.starmap(_client, [(endpoint, rows, seconds)] * CLIENTS)
    inferences, executions = (
        after - previous for after, previous in zip(_counts(endpoint), before, strict=True)
    )
    return sum(counts) / seconds, inferences / max(executions, 1)


def _counts(endpoint: str) -> tuple[int, int]:
    client = grpcclient.InferenceServerClient(endpoint)
    stats = client.get_inference_statistics("churn", as_json=True)["model_stats"][0]
    client.close()
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def bench_dynamic_batching(log_dir: Path) -> None:
    report, environment = prepare(CHURN, RUNTIME, BUILDER)
    launcher = launcher_for(RUNTIME)
    rows = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
    rates: dict[bool, tuple[float, float]] = {}
    for batching in (True, False):
        with launched(
            report, environment, launcher=launcher, log_path=log_dir / f"throughput-{batching}.log"
        ) as served:
            if not batching:
                config = served.repository / "churn" / "config.pbtxt"
                text = re.sub(r"dynamic_batching \{[^}]*\}", "", config.read_text())
                config.unlink()  # a hard link to the model directory's file: replace it, never write through
                config.write_text(text)
                served.server.load("churn")  # reload without the batcher
            throughput(served.server.endpoints.grpc, rows[:16], seconds=1.0)  # warm up
            rates[batching] = throughput(served.server.endpoints.grpc, rows)
    (plain, _), (batched, batch_size) = rates[False], rates[True]
    print(
        f"{'churn replay, ' + str(CLIENTS) + ' client processes':<34} {'without batching':>22} {plain:>9.1f} {'req/s':<5} "
        f"{'dynamic batching':>22} {batched:>9.1f} {'req/s':<5} {batched / plain:>8.1f}x"
        f"   (mean executed batch {batch_size:.1f})"
    )


def bench_container(log_dir: Path) -> None:
    """The container launcher against the local one: start to ready, loading digits (packed envs, what a
    container serves), and replaying churn's cases."""
    container_runtime = load_config(ROOT).runtime("container")
    launchers = {"local": launcher_for(RUNTIME), "container": launcher_for(container_runtime)}
    starts: dict[str, list[float]] = {"local": [], "container": []}
    empty = Path(tempfile.mkdtemp(prefix="packager-bench-empty-"))
    empty.chmod(0o755)
    for attempt in range(5):
        for name, launcher in launchers.items():
            started = time.perf_counter()
            with launcher.start(empty, log_dir / f"start-{name}-{attempt}.log"):
                starts[name].append(time.perf_counter() - started)
    row(
        "start to ready",
        ("local (median of 5)", statistics.median(starts["local"])),
        ("container (median of 5)", statistics.median(starts["container"])),
    )
    report, environment = prepare(DIGITS, RUNTIME, BUILDER)
    loads: dict[str, list[float]] = {"local": [], "container": []}
    for attempt in range(3):
        for name, launcher in launchers.items():
            with staged_repository(report, environment, "packed") as repository:
                with launcher.start(repository, log_dir / f"load-{name}-{attempt}.log") as server:
                    loads[name].append(one_by_one(server, report.triton_models))
    row(
        "load digits, packed envs",
        ("local (median of 3)", statistics.median(loads["local"])),
        ("container (median of 3)", statistics.median(loads["container"])),
    )
    replays = {
        name: timed(
            replay_model,
            CHURN,
            RUNTIME,
            BUILDER,
            launcher,
            log_dir / f"replay-{name}.log",
            "packed",
        )
        for name, launcher in launchers.items()
    }
    row(
        "replay churn (10 requests, packed)", ("local", replays["local"]), ("container", replays["container"])
    )


@contextmanager
def source_only(environment: Environment) -> Iterator[Environment]:
    """A copy of a cached environment whose unpacked tree has no bytecode (what it held before the cache
    compiled it at build)."""
    with tempfile.TemporaryDirectory(prefix="packager-bench-env-") as scratch:
        copy = Path(scratch) / "env"
        shutil.copytree(environment.directory, copy, symlinks=True)
        for cached in sorted(copy.glob("unpacked/**/__pycache__")):
            shutil.rmtree(cached)
        yield Environment(environment.key, copy, cache_hit=True, seconds=0.0)


def _in_group(group: int) -> bool:
    """Whether any process of the group exists, zombies included."""
    for pid in (int(entry) for entry in os.listdir("/proc") if entry.isdigit()):
        try:
            if os.getpgid(pid) == group:
                return True
        except ProcessLookupError:
            continue
    return False


def _quietly(command: list[str], env: Mapping[str, str]) -> None:
    """Run `command` from the repository's root; its output only when it fails."""
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def bench_replay_loop(log_dir: Path) -> None:
    report, environment = prepare(DIGITS, RUNTIME, BUILDER)
    assert environment is not None  # digits' steps name EXECUTION_ENV_PATH
    launcher = launcher_for(RUNTIME)
    cases = load_cases(DIGITS.path, report.triton_models, top_model(report.triton_models))
    sequential, at_once, reaped, killed = [], [], [], []
    one_protocol_then_other, side_by_side = [], []
    for attempt in range(3):
        with staged_repository(report, environment, "unpacked") as repository:
            with launcher.start(repository, log_dir / f"loop-a-{attempt}.log") as server:
                sequential.append(one_by_one(server, report.triton_models))
                one_protocol_then_other.append(
                    sum(timed(replay_cases, "digits", server, cases, (p,)) for p in PROTOCOLS)
                )
                assert isinstance(server, TritonServer)
                process = server.process
                assert isinstance(process, subprocess.Popen)  # the local launcher's
                started = time.perf_counter()
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                while _in_group(process.pid):  # zombies too, as the wait before counted them
                    time.sleep(0.01)
                reaped.append(time.perf_counter() - started)
            context = launcher.start(repository, log_dir / f"loop-b-{attempt}.log")
            server = context.__enter__()
            at_once.append(timed(load_all, server, report.triton_models))
            side_by_side.append(timed(replay_cases, "digits", server, cases, PROTOCOLS))
            killed.append(timed(context.__exit__, None, None, None))
    row(
        "load digits' steps",
        ("one by one", statistics.median(sequential)),
        ("at once", statistics.median(at_once)),
    )
    with source_only(environment) as uncompiled:
        from_source = []
        for attempt in range(3):
            with staged_repository(report, uncompiled, "unpacked") as repository:
                with launcher.start(repository, log_dir / f"loop-c-{attempt}.log") as server:
                    from_source.append(timed(lambda: load_all(server, report.triton_models)))
    row(
        "load digits' steps at once",
        ("env as source", statistics.median(from_source)),
        ("env compiled", statistics.median(at_once)),
    )
    row(
        "first cases (HTTP, gRPC)",
        ("one after the other", statistics.median(one_protocol_then_other)),
        ("side by side", statistics.median(side_by_side)),
    )
    row(
        "stop digits' server",
        ("until zombies reaped", statistics.median(reaped)),
        ("until none runs", statistics.median(killed)),
    )
    replays = [
        timed(
            lambda: replay_model(
                DIGITS, RUNTIME, builder=BUILDER, launcher=launcher, log_path=log_dir / "loop-replay.log"
            )
        )
        for _ in range(3)
    ]
    print(f"{'whole warm replay digits (median of 3)':<34} {statistics.median(replays):>22.2f} s")
    command = [sys.executable, "-m", "packager", "replay", "digits"]
    same_imports = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cli = [timed(lambda: _quietly(command, same_imports)) for _ in range(3)]
    floor = [timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)) for _ in range(3)]
    row(
        "warm `packager replay digits`",
        ("python -c pass", statistics.median(floor)),
        ("the command", statistics.median(cli)),
    )


def _latency(endpoint: str, rows: np.ndarray, count: int = 400) -> float:
    """The median seconds of `count` single-row gRPC requests from one client, back to back."""
    client = grpcclient.InferenceServerClient(endpoint)
    features = grpcclient.InferInput("FEATURES", [1, 8], "FP32")
    seconds = []
    for index in range(count):
        features.set_data_from_numpy(rows[index % len(rows)][None, :])
        seconds.append(timed(lambda: client.infer("churn", [features])))
    client.close()
    return statistics.median(seconds[count // 10 :])  # past the first requests' warm-up


def bench_relay(log_dir: Path) -> None:
    report, environment = prepare(CHURN, RUNTIME, BUILDER)
    install = LocalLauncher.for_runtime(RUNTIME).install
    rows = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
    starts: dict[bool, list[float]] = {True: [], False: []}
    latency: dict[bool, float] = {}
    rate: dict[bool, float] = {}
    empty = Path(tempfile.mkdtemp(prefix="packager-bench-empty-"))
    for network in (True, False):
        launcher = LocalLauncher(install, network=network)
        for attempt in range(5):
            started = time.perf_counter()
            with launcher.start(empty, log_dir / f"relay-start-{network}-{attempt}.log"):
                starts[network].append(time.perf_counter() - started)
        with launched(
            report, environment, launcher=launcher, log_path=log_dir / f"relay-{network}.log"
        ) as served:
            endpoint = served.server.endpoints.grpc
            throughput(endpoint, rows[:16], seconds=1.0)  # warm up
            latency[network] = _latency(endpoint, rows)
            rate[network] = throughput(endpoint, rows)[0]
    row(
        "start to ready (median of 5)",
        ("network shared", statistics.median(starts[True])),
        ("own netns + relays", statistics.median(starts[False])),
    )
    row(
        "churn request, 1 client (median)",
        ("network shared", latency[True] * 1000),
        ("own netns + relays", latency[False] * 1000),
        unit="ms",
    )
    print(
        f"{'churn, ' + str(CLIENTS) + ' client processes':<34} {'network shared':>22} {rate[True]:>9.1f} {'req/s':<5} "
        f"{'own netns + relays':>22} {rate[False]:>9.1f} {'req/s':<5} {rate[False] / rate[True]:>8.2f}x"
    )


BENCHMARKS = {
    "env": bench_env_build,
    "start": bench_server_start,
    "load": bench_load_modes,
    "batching": bench_dynamic_batching,
    "container": bench_container,
    "replay": bench_replay_loop,
    "relay": bench_relay,
}


def main() -> None:
    chosen = sys.argv[1:] or list(BENCHMARKS)
    print(f"runtime {RUNTIME.name} (Triton {RUNTIME.triton_version}), {os.cpu_count()} CPUs")
    print(f"{'benchmark':<34} {'baseline':>22} {'':>15} {'measured':>22} {'':>15} {'ratio':>9}")
    log_dir = Path(tempfile.mkdtemp(prefix="packager-bench-logs-"))
    for name in chosen:
        BENCHMARKS[name](log_dir)
    print(f"(server logs: {log_dir})")


if __name__ == "__main__":
    main()
