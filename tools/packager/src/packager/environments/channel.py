"""The `local` conda channel: a relocatable `python` conda package made from a CPython of this machine,
for the conda builder where conda-forge cannot be reached (air-gapped machines, CI here).

The package holds the interpreter, its shared libpython and the standard library (tests, IDLE and
tkinter left out, site-packages empty). The binary finds libpython through `$ORIGIN/../lib` (patchelf),
and text files that named the installation prefix carry conda's placeholder, so the environment works
wherever it is unpacked, with the source interpreter gone. Built once per interpreter into the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from packager.cache import building, cache_root, locked
from packager.environments.interpreters import Interpreter
from packager.errors import EnvironmentFailure
from packager.reporting import Report, silent

LOCAL_CHANNEL = "local"
PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
# Bump when the package's contents change shape, so that cached channels are rebuilt.
CHANNEL_FORMAT = 1
LEFT_OUT = ("test", "idlelib", "tkinter", "turtledemo", "__pycache__", "ensurepip", "lib2to3")


def local_channel(interpreter: Interpreter, report: Report = silent) -> Path:
    """The channel directory holding `python` made from `interpreter`, built now if it is not cached."""
    fingerprint = json.dumps(
        [CHANNEL_FORMAT, str(interpreter.prefix), interpreter.version, interpreter.platform]
    )
    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    directory = cache_root() / "channels" / f"python-{interpreter.version}-{key}"
    if not (directory / "channel.json").is_file():
        with locked(directory):
            if not (directory / "channel.json").is_file():
                report(f"making a local conda channel from CPython {interpreter.version}")
                with building(directory) as scratch:
                    _write_channel(interpreter, key, scratch)
    return directory


def _write_channel(interpreter: Interpreter, key: str, channel: Path) -> None:
    for subdir in ("linux-64", "noarch"):
        (channel / subdir).mkdir(parents=True)
    build = f"h{key[:8]}_0"
    package = channel / "linux-64" / f"python-{interpreter.version}-{build}.tar.bz2"
    _python_package(interpreter, build, package)
    from rattler.index import index_fs  # imported only when a channel is made

    asyncio.run(index_fs(channel))
    (channel / "channel.json").write_text(json.dumps({"python": interpreter.version, "build": build}) + "\n")


def _python_package(interpreter: Interpreter, build: str, out: Path) -> None:
    """A conda package of the interpreter's installation, made relocatable."""
    prefix = interpreter.prefix.resolve()
    minor = interpreter.minor
    with tempfile.TemporaryDirectory(prefix=".python-", dir=out.parent) as scratch:
        tree = Path(scratch)
        _copy(prefix / "bin", tree / "bin", lambda name: name.startswith(("python", f"python{minor}")))
        _copy(prefix / "lib", tree / "lib", lambda name: name.startswith(f"libpython{minor}"))
        stdlib = prefix / "lib" / f"python{minor}"
        shutil.copytree(
            stdlib,
            tree / "lib" / f"python{minor}",
            symlinks=True,
            ignore=lambda directory, names: [
                name
                for name in names
                if name in LEFT_OUT or (Path(directory) == stdlib / "site-packages" and name != "README.txt")
            ],
        )
        if (prefix / "include" / f"python{minor}").is_dir():
            shutil.copytree(prefix / "include" / f"python{minor}", tree / "include" / f"python{minor}")
        _relocate_binaries(tree, minor)
        paths = _placeholders(tree, str(prefix))
        _write_package(tree, out, interpreter, build, paths)


def _copy(source: Path, destination: Path, keep: Callable[[str], bool]) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        if keep(entry.name) and (entry.is_file() or entry.is_symlink()):
            shutil.copy2(entry, destination / entry.name, follow_symlinks=False)


def _relocate_binaries(tree: Path, minor: str) -> None:
    """The interpreter finds libpython beside it; libraries carry no build-machine search paths."""
    patchelf = _patchelf()
    binary = tree / "bin" / f"python{minor}"
    _run([patchelf, "--set-rpath", "$ORIGIN/../lib", str(binary)])
    libraries = [path for path in (tree / "lib").glob(f"libpython{minor}*.so*") if not path.is_symlink()]
    libraries += sorted((tree / "lib" / f"python{minor}" / "lib-dynload").glob("*.so"))
    for library in libraries:
        _run([patchelf, "--remove-rpath", str(library)])


def _patchelf() -> str:
    found = shutil.which("patchelf")
    if found is None:
        raise EnvironmentFailure("the local conda channel needs patchelf: `apt-get install patchelf`")
    return found


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise EnvironmentFailure(f"{command[0]} failed on {command[-1]}: {result.stderr.strip()}")


def _placeholders(tree: Path, prefix: str) -> dict[str, dict[str, object]]:
    """Replace the installation prefix in text files by conda's placeholder; paths.json entries by path."""
    entries: dict[str, dict[str, object]] = {}
    for path in sorted(tree.rglob("*")):
        relative = path.relative_to(tree).as_posix()
        if path.is_symlink():
            entries[relative] = {"_path": relative, "path_type": "softlink"}
            continue
        if not path.is_file():
            continue
        data = path.read_bytes()
        entry: dict[str, object] = {"_path": relative, "path_type": "hardlink"}
        if prefix.encode() in data and b"\0" not in data[:8192]:
            data = data.replace(prefix.encode(), PLACEHOLDER.encode())
            path.write_bytes(data)
            entry.update(prefix_placeholder=PLACEHOLDER, file_mode="text")
        entry.update(sha256=hashlib.sha256(data).hexdigest(), size_in_bytes=len(data))
        entries[relative] = entry
    return entries


def _write_package(
    tree: Path, out: Path, interpreter: Interpreter, build: str, paths: dict[str, dict[str, object]]
) -> None:
    index = {
        "name": "python",
        "version": interpreter.version,
        "build": build,
        "build_number": 0,
        "subdir": "linux-64",
        "arch": "x86_64",
        "platform": "linux",
        "depends": ["__glibc >=2.17"],
        "license": "PSF-2.0",
        "timestamp": 0,
    }
    info = {
        "info/index.json": json.dumps(index, indent=2, sort_keys=True).encode(),
        "info/paths.json": json.dumps({"paths": list(paths.values()), "paths_version": 1}, indent=2).encode(),
        "info/files": "".join(f"{name}\n" for name in paths).encode(),
    }
    with tarfile.open(out, "w:bz2", compresslevel=1) as tar:
        for name, data in info.items():
            member = tarfile.TarInfo(name)
            member.size, member.mode = len(data), 0o644
            tar.addfile(member, io.BytesIO(data))
        for name in paths:
            path = tree / name
            member = tar.gettarinfo(str(path), arcname=name)
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            member.mtime = 0
            if member.isfile():
                member.mode = 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
                with open(path, "rb") as handle:
                    tar.addfile(member, handle)
            else:
                tar.addfile(member)
    os.chmod(out, 0o644)
