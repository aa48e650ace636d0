"""Build the sandbox runtime image, online (a slim official Python image) or offline (debootstrap).

The image is tagged ``autotts-sandbox:<hash>`` where the hash covers the runtime sources, the
Dockerfile and the in-box reset script, so a change to any of them makes the backend ask for a new
build and an unchanged tree reuses the image.

Offline path (no container registry reachable, e.g. CI): ``debootstrap --variant=minbase
--include=python3`` a Debian rootfs from the mirror apt already uses, install numpy into it from wheels
the host downloads (``pip download`` there, ``pip install --no-index`` into the rootfs: containers reach
no package index and the host's TLS set-up is not in the image), ``docker import`` it as the base, then
build the same Dockerfile on top with networking off.

Run as ``python -m autotts_graph.sandbox.image.build [--offline] [--base IMAGE] [--force]`` or through
``autotts-graph sandbox build``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

IMAGE_DIR = Path(__file__).resolve().parent
RUNTIME_DIR = IMAGE_DIR.parent / "runtime"
IMAGE_REPO = "autotts-sandbox"
BASE_REPO = "autotts-sandbox-base"
DEFAULT_BASE = "python:3.12-slim"
DEFAULT_NUMPY_SPEC = "numpy>=1.26"
LABEL = "org.autotts.sandbox"
FALLBACK_MIRROR = "http://deb.debian.org/debian"

log = logging.getLogger("autotts_graph.sandbox.image")


class BuildError(RuntimeError):
    """The image could not be built; the message is one line meant for the user."""


class BuildResult(BaseModel):
    """What ``build_image`` produced."""

    image: str
    base: str
    built: bool  # False when an image with the same source hash already existed
    seconds: float


def _context_files() -> list[tuple[str, Path]]:
    """(path inside the build context, host path) of everything that goes into the image."""
    files = [("Dockerfile", IMAGE_DIR / "Dockerfile")]
    for path in sorted(RUNTIME_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".npy", ".json"}:
            files.append((f"autotts_runtime/{path.relative_to(RUNTIME_DIR).as_posix()}", path))
    return files


def source_hash() -> str:
    """Hash of the runtime sources and the Dockerfile (12 hex digits)."""
    digest = hashlib.sha256()
    for name, path in _context_files():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def image_tag() -> str:
    """The tag the current sources build to, e.g. ``autotts-sandbox:3f2a9c01b7de``."""
    return f"{IMAGE_REPO}:{source_hash()}"


def docker_client(timeout: int = 600) -> Any:
    """A docker SDK client from the environment (DOCKER_HOST or the default socket), checked with a ping."""
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # the SDK raises DockerException, requests errors or OSError
        raise BuildError(f"no Docker engine answers at {engine_address()}: start dockerd or use --sandbox bwrap "
                         f"({exc.__class__.__name__})") from None
    return client


def engine_address() -> str:
    """Where the SDK looks for the engine."""
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def image_exists(client: Any, ref: str) -> bool:
    """Whether the engine has an image called ``ref``."""
    import docker

    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def _context_tar() -> io.BytesIO:
    """The build context (Dockerfile, autotts_runtime/) as an in-memory tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, path in _context_files():
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o644
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    buf.seek(0)
    return buf


def _docker_build(client: Any, tag: str, base: str, numpy_spec: str, network: bool,
                  emit: Callable[[str], None]) -> None:
    """Build the Dockerfile on ``base`` with the classic builder (no BuildKit: it works offline)."""
    import docker

    try:
        stream = client.api.build(fileobj=_context_tar(), custom_context=True, tag=tag, rm=True, forcerm=True,
                                  pull=False, decode=True, network_mode=None if network else "none",
                                  buildargs={"BASE": base, "NUMPY_SPEC": numpy_spec},
                                  labels={LABEL: "1", f"{LABEL}.base": base, f"{LABEL}.hash": tag.split(":")[1]})
        for chunk in stream:
            if "error" in chunk:
                raise BuildError(f"docker build failed: {chunk['error'].strip()}")
            text = chunk.get("stream", "").strip()
            if text:
                emit(text)
    except docker.errors.APIError as exc:
        raise BuildError(f"docker build failed: {exc.explanation or exc}") from None


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (AUTOTTS_DEBIAN_MIRROR overrides it)."""
    if os.environ.get("AUTOTTS_DEBIAN_MIRROR"):
        return os.environ["AUTOTTS_DEBIAN_MIRROR"]
    candidates: list[str] = []
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        candidates += re.findall(r"^URIs:\s*(\S+)", text, flags=re.M)
        candidates += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, flags=re.M)
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    return FALLBACK_MIRROR


def debian_suite() -> str:
    """This host's Debian codename (the rootfs follows it so the host's wheels match), else bookworm."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "bookworm"
    match = re.search(r"^VERSION_CODENAME=(\w+)", text, flags=re.M)
    return match.group(1) if match else "bookworm"


def _run(cmd: list[str], what: str, emit: Callable[[str], None], **kwargs: Any) -> None:
    emit(f"$ {' '.join(cmd[:6])}{' ...' if len(cmd) > 6 else ''}")
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise BuildError(f"{what} failed (exit {proc.returncode}): {tail[0]}")


def _wheel_platforms() -> list[str]:
    machine = platform.machine()
    return [f"manylinux_2_28_{machine}", f"manylinux_2_17_{machine}", f"manylinux2014_{machine}"]


def build_offline_base(client: Any, suite: str, mirror: str, numpy_spec: str, force: bool,
                       emit: Callable[[str], None]) -> str:
    """debootstrap + host-downloaded numpy wheels + ``docker import``; returns the base image tag."""
    key = hashlib.sha256(f"{suite}|{numpy_spec}|{platform.machine()}|pypy3".encode()).hexdigest()[:10]
    tag = f"{BASE_REPO}:{suite}-{key}"
    if not force and image_exists(client, tag):
        emit(f"offline base {tag} already exists")
        return tag
    if os.geteuid() != 0:
        raise BuildError("the offline build runs debootstrap and must run as root")
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed: apt-get install debootstrap")
    with tempfile.TemporaryDirectory(prefix="autotts-rootfs-") as work:
        rootfs, wheels = Path(work) / "rootfs", Path(work) / "wheels"
        emit(f"debootstrap {suite} from {mirror} (about a minute)")
        _run(["debootstrap", "--variant=minbase", "--include=python3,pypy3", suite, str(rootfs), mirror],
             "debootstrap", emit)
        versions = sorted(p.name for p in (rootfs / "usr/lib").glob("python3.*")
                          if re.fullmatch(r"python3\.\d+", p.name))
        if not versions:
            raise BuildError("debootstrap produced no python3")
        pyver = versions[-1].removeprefix("python")  # e.g. 3.11
        abi = "cp" + pyver.replace(".", "")
        target = rootfs / f"usr/local/lib/python{pyver}/dist-packages"
        platform_args = [a for p in _wheel_platforms() for a in ("--platform", p)]
        wheel_args = ["--only-binary=:all:", "--no-deps", "--python-version", pyver, "--implementation", "cp",
                      "--abi", abi, *platform_args]
        emit(f"downloading numpy wheels for Python {pyver} on the host")
        _run([sys.executable, "-m", "pip", "download", "-q", *wheel_args, "-d", str(wheels), numpy_spec],
             "pip download", emit)
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
              "--no-compile", "--target", str(target), *wheel_args, numpy_spec], "pip install --no-index", emit)
        # Compile with the rootfs's own interpreter: the root filesystem is read-only at run time.
        _run(["chroot", str(rootfs), f"/usr/bin/python{pyver}", "-m", "compileall", "-q",
              f"/usr/local/lib/python{pyver}/dist-packages"], "compileall in the rootfs", emit)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                     "usr/share/info", "usr/share/locale"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        tarball = Path(work) / "rootfs.tar"
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], "tar of the rootfs", emit)
        emit(f"docker import as {tag}")
        repo, _, version = tag.partition(":")
        try:
            client.api.import_image_from_file(str(tarball), repository=repo, tag=version,
                                              changes=['CMD ["sleep", "infinity"]',
                                                       "ENV PATH=/usr/local/bin:/usr/bin:/bin"])
        except Exception as exc:
            raise BuildError(f"docker import failed: {exc}") from None
    if not image_exists(client, tag):
        raise BuildError(f"docker import did not produce {tag}")
    return tag


def build_image(offline: bool = False, base: str | None = None, force: bool = False,
                numpy_spec: str = DEFAULT_NUMPY_SPEC, mirror: str | None = None, suite: str | None = None,
                emit: Callable[[str], None] | None = None) -> BuildResult:
    """Build (or reuse) the runtime image for the current sources.

    ``offline`` builds the base from debootstrap (``mirror``/``suite`` default to this host's apt set-up);
    otherwise ``base`` (default ``python:3.12-slim``) is pulled by the classic builder if missing.
    """
    say = emit or log.info
    started = time.perf_counter()
    client = docker_client()
    tag = image_tag()
    if not force and image_exists(client, tag):
        existing = client.images.get(tag).labels.get(f"{LABEL}.base", "?")
        return BuildResult(image=tag, base=existing, built=False, seconds=time.perf_counter() - started)
    if offline:
        base = build_offline_base(client, suite or debian_suite(), mirror or debian_mirror(), numpy_spec,
                                  force, say)
    else:
        base = base or DEFAULT_BASE
    say(f"building {tag} on {base}")
    _docker_build(client, tag, base, numpy_spec, network=not offline, emit=say)
    return BuildResult(image=tag, base=base, built=True, seconds=time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (used by CI); prints progress and one final line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline", action="store_true", help="debootstrap rootfs + local wheels, no registry")
    parser.add_argument("--base", default=None, help=f"base image for the online path (default {DEFAULT_BASE})")
    parser.add_argument("--force", action="store_true", help="rebuild even if the tagged image exists")
    parser.add_argument("--numpy", default=DEFAULT_NUMPY_SPEC, help="numpy requirement")
    args = parser.parse_args(argv)
    try:
        result = build_image(offline=args.offline, base=args.base, force=args.force, numpy_spec=args.numpy,
                             emit=lambda line: print(line, flush=True))
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    verb = "built" if result.built else "up to date:"
    print(f"{verb} {result.image} (base {result.base}, {result.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
