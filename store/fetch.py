"""Download the AutoTTS reference repository's replay files into the store (``store fetch autotts``).

The files live in the reference repository as ``<Model>/<dataset>.json`` below one folder; the package
pins them in ``fetch_manifest.json`` (repository, commit, folder, and the size and sha256 of every file
whose checksum is known). A fetch

1. plans the files from the model and dataset filters (nothing is requested for an unknown name, and a
   file without a pinned checksum is refused unless verification is switched off);
2. downloads each file into the store's cache folder (``<store>.cache/autotts/``) through a ``.part``
   file, resuming with an HTTP ``Range`` request when a previous attempt or this one broke off;
3. verifies size and sha256, then parses and validates every file;
4. only then imports them (AIME24 into the search split, AIME25 and HMMT25 into held-out), each file in
   its own transaction and idempotently by content hash.

A verified file stays in the cache, so fetching again needs no network. Errors are :class:`FetchError`
(a :class:`~autotts_graph.store.db.StoreError`): one line a user can act on.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, Field

from .db import Store, StoreError
from .trajectories import content_hash, import_records, list_environments, read_records, set_split

MANIFEST_PATH = Path(__file__).with_name("fetch_manifest.json")
BASE_URL_ENV = "AUTOTTS_FETCH_BASE_URL"
SOURCES = ("autotts",)
CHUNK_BYTES = 1 << 16
ATTEMPTS = 4  # per file and run: the first request plus up to three resumptions after a broken connection
USER_AGENT = "autotts-graph-fetch/1"
NETWORK_HINT = "check your network or pass --base-url for a mirror"

Split = Literal["search", "heldout"]


class FetchError(StoreError):
    """A download that cannot go on (offline, HTTP error, checksum mismatch, bad selection); one line."""


class PinnedFile(BaseModel):
    """The published size and sha256 of one replay file."""

    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """The catalogue of the reference repository's replay files (``fetch_manifest.json``)."""

    repository: str = Field(description="GitHub URL of the reference repository.")
    commit: str = Field(description="The commit the pinned checksums were taken from.")
    path: str = Field(description="Folder of the repository holding <Model>/<dataset>.json.")
    models: list[str]
    datasets: dict[str, Split] = Field(description="dataset -> the split it is imported into.")
    files: dict[str, PinnedFile] = Field(description="'<Model>/<dataset>.json' -> size and sha256.")

    def default_base_url(self) -> str:
        """The raw-file URL of the pinned folder on raw.githubusercontent.com."""
        owner_repo = urlsplit(self.repository).path.strip("/")
        return f"https://raw.githubusercontent.com/{owner_repo}/{self.commit}/{self.path.strip('/')}"


class FetchRequest(BaseModel):
    """What to fetch and from where."""

    models: list[str] = Field(default_factory=list, description="Models to fetch (empty: all).")
    datasets: list[str] = Field(default_factory=list,
                                description="Datasets to fetch (empty: those with pinned checksums; a file without "
                                            "one is fetched only when named here and with verify off).")
    base_url: str | None = Field(default=None, description=f"Mirror URL (default: ${BASE_URL_ENV} or upstream).")
    verify: bool = Field(default=True, description="Check size and sha256 against the manifest.")
    replace: bool = Field(default=False, description="Overwrite an environment whose content differs.")
    timeout_s: float = Field(default=30.0, gt=0, description="Seconds to wait for the server on each read.")


class PlannedFile(BaseModel):
    """One file to download: where from, which environment and split it becomes, what it must hash to."""

    model: str
    dataset: str
    split: Split
    url: str
    pinned: PinnedFile | None

    @property
    def name(self) -> str:
        """The environment name, ``<model>/<dataset>``."""
        return f"{self.model}/{self.dataset}"

    @property
    def rel_path(self) -> str:
        """The file's path below the base URL (and below the cache folder)."""
        return f"{self.model}/{self.dataset}.json"


class FetchPlan(BaseModel):
    """The files a request resolves to, and the catalogue files it leaves out for lack of a checksum."""

    base_url: str
    files: list[PlannedFile]
    unpinned_skipped: list[str] = Field(default_factory=list)


class FetchedFile(BaseModel):
    """One downloaded (or cached) file."""

    name: str
    split: Split
    url: str
    path: str
    size: int
    sha256: str
    verified: bool = Field(description="Size and sha256 matched the manifest.")
    cached: bool = Field(description="Taken from the cache folder without a request.")
    resumed_from: int = Field(description="Bytes already on disk when the first request was made.")
    requests: int = Field(description="HTTP requests made for this file.")


class FetchedEnvironment(BaseModel):
    """The store's verdict on one fetched file."""

    name: str
    split: Split
    created: bool = Field(description="False: the same content was already stored.")
    retagged_from: str | None = Field(default=None, description="The split it had before, when fetch moved it.")


class FetchResult(BaseModel):
    """Everything a fetch did."""

    base_url: str
    files: list[FetchedFile]
    environments: list[FetchedEnvironment]
    unpinned_skipped: list[str] = Field(default_factory=list)


class Progress(Protocol):
    """Byte progress of the downloads (the CLI draws a bar; the library stays silent)."""

    def start(self, name: str, total: int | None, done: int) -> None:
        """A download of ``name`` begins (``done`` bytes already on disk)."""

    def update(self, done: int, total: int | None) -> None:
        """``done`` of ``total`` bytes (None: unknown) of the current file are on disk."""

    def end(self) -> None:
        """The current download is over (finished or failed)."""


class _Silent:
    def start(self, name: str, total: int | None, done: int) -> None:
        pass

    def update(self, done: int, total: int | None) -> None:
        pass

    def end(self) -> None:
        pass


class _BrokenOff(Exception):
    """The connection ended before the whole body arrived (the download can resume)."""


@cache
def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    """The packaged catalogue of reference replay files."""
    return Manifest.model_validate(json.loads(path.read_text()))


def default_base_url(manifest: Manifest | None = None) -> str:
    """``$AUTOTTS_FETCH_BASE_URL`` or the pinned upstream folder on raw.githubusercontent.com."""
    return os.environ.get(BASE_URL_ENV) or (manifest or load_manifest()).default_base_url()


def normalise_base_url(base_url: str) -> str:
    """A URL without its trailing slash; a local folder becomes a ``file://`` URL."""
    base_url = base_url.strip()
    if "://" not in base_url:
        return Path(base_url).expanduser().resolve().as_uri()
    return base_url.rstrip("/")


def cache_dir(store: Store) -> Path:
    """Where fetched files are kept: ``<store file>.cache/autotts/``."""
    return store.path.with_name(store.path.name + ".cache") / "autotts"


def _pick(asked: list[str], known: list[str], what: str) -> list[str]:
    unknown = [a for a in asked if a not in known]
    if unknown:
        raise FetchError(f"unknown {what} {unknown[0]!r} (known: {', '.join(known)})")
    return [k for k in known if k in asked] if asked else list(known)


def plan_fetch(request: FetchRequest, manifest: Manifest | None = None) -> FetchPlan:
    """Resolve the filters to files and URLs; FetchError (before any request) for a selection it cannot serve."""
    manifest = manifest or load_manifest()
    base = normalise_base_url(request.base_url or default_base_url(manifest))
    models = _pick(request.models, manifest.models, "model")
    datasets = _pick(request.datasets, list(manifest.datasets), "dataset")
    files: list[PlannedFile] = []
    skipped: list[str] = []
    for model in models:
        for dataset in datasets:
            rel = f"{model}/{dataset}.json"
            pinned = manifest.files.get(rel)
            if pinned is None:  # fetched only when named explicitly, and only unverified
                if not request.datasets:
                    skipped.append(f"{model}/{dataset}")
                    continue
                if request.verify:
                    raise FetchError(f"no checksum is pinned for {model}/{dataset}, so it cannot be verified; "
                                     "pass --no-verify to fetch it unverified")
            files.append(PlannedFile(model=model, dataset=dataset, split=manifest.datasets[dataset],
                                     url=f"{base}/{quote(model)}/{quote(dataset)}.json", pinned=pinned))
    if not files:
        raise FetchError("nothing to fetch: no selected file has a pinned checksum; name its datasets with "
                         "--dataset and pass --no-verify")
    return FetchPlan(base_url=base, files=files, unpinned_skipped=skipped)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cannot(url: str, why: object) -> FetchError:
    return FetchError(f"cannot reach {url}: {why}; {NETWORK_HINT}")


def _request(url: str, part: Path, have: int, timeout_s: float,
             on_bytes: Callable[[int, int | None], None]) -> None:
    """One GET of ``url`` into ``part``, from byte ``have`` on; _BrokenOff when the body is cut short.

    ``on_bytes(done, total)`` follows the bytes on disk (``total`` from Content-Length, when sent).
    """
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is not a prefix of what the server has: start over
            part.unlink(missing_ok=True)
            raise _BrokenOff("the server refused to resume") from None
        raise FetchError(f"cannot fetch {url}: HTTP {exc.code} {exc.reason}; {NETWORK_HINT}") from None
    except urllib.error.URLError as exc:
        raise _cannot(url, exc.reason) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _cannot(url, str(exc) or type(exc).__name__) from None
    with response:
        status = response.status or 200  # file:// responses carry no status
        if status == 206:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if start != have:
                raise FetchError(f"cannot resume {url}: asked for byte {have}, the server sent from {start}")
            mode = "ab"
        elif status == 200:
            have, mode = 0, "wb"  # no resume support (or nothing to resume): the whole body follows
        else:
            raise FetchError(f"cannot fetch {url}: unexpected HTTP {status}; {NETWORK_HINT}")
        length = response.headers.get("Content-Length")
        end = have + int(length) if length and length.isdigit() else None
        done = have
        on_bytes(done, end)
        with part.open(mode) as out:
            try:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    done += len(chunk)
                    on_bytes(done, end)
            except (OSError, http.client.HTTPException) as exc:
                raise _BrokenOff(str(exc) or type(exc).__name__) from None
    if end is not None and done < end:
        raise _BrokenOff(f"connection closed after {done:,} of {end:,} bytes")


def _content_range_start(value: str) -> int | None:
    """The first byte of ``Content-Range: bytes START-END/TOTAL``."""
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def download_file(planned: PlannedFile, directory: Path, *, verify: bool = True, timeout_s: float = 30.0,
                  progress: Progress | None = None) -> FetchedFile:
    """Download one file into ``directory/<Model>/<dataset>.json`` (resuming a ``.part`` file) and verify it.

    A file already there that matches its pinned checksum is used as is. A checksum mismatch deletes the
    download and raises FetchError; when the download had been resumed, it is first retried once from
    scratch (the old partial file may have come from different content).
    """
    progress = progress or _Silent()
    target = directory / planned.rel_path
    part = target.with_name(target.name + ".part")
    pinned = planned.pinned if verify else None
    if pinned and target.is_file() and target.stat().st_size == pinned.size and _sha256(target) == pinned.sha256:
        return FetchedFile(name=planned.name, split=planned.split, url=planned.url, path=str(target),
                           size=pinned.size, sha256=pinned.sha256, verified=True, cached=True, resumed_from=0,
                           requests=0)
    target.parent.mkdir(parents=True, exist_ok=True)
    total = planned.pinned.size if planned.pinned else None
    if part.exists() and total is not None and part.stat().st_size > total:
        part.unlink()
    resumed_from = part.stat().st_size if part.exists() else 0
    requests = 0
    fresh_retry_left = True
    while True:
        broken: list[str] = []
        progress.start(planned.name, total, part.stat().st_size if part.exists() else 0)
        try:
            while True:
                have = part.stat().st_size if part.exists() else 0
                if total is not None and have == total:
                    break  # a complete partial file from an earlier run: nothing left to ask for
                requests += 1
                try:
                    _request(planned.url, part, have, timeout_s, lambda n, size: progress.update(n, size or total))
                    break
                except _BrokenOff as exc:
                    broken.append(str(exc))
                    if len(broken) >= ATTEMPTS:
                        raise FetchError(f"download of {planned.url} broke off {len(broken)} times ({exc}); run "
                                         "the command again to resume it") from None
        finally:
            progress.end()
        size, digest = part.stat().st_size, _sha256(part)
        if pinned is None or (size == pinned.size and digest == pinned.sha256):
            break
        part.unlink()
        resumed = resumed_from > 0 or bool(broken)
        if resumed and fresh_retry_left:
            fresh_retry_left = False
            continue
        raise FetchError(f"checksum mismatch for {planned.name} from {planned.url}: expected {pinned.size:,} bytes "
                         f"with sha256 {pinned.sha256[:16]}…, got {size:,} bytes with sha256 {digest[:16]}…; "
                         "nothing was imported (use a mirror of the published files, or --no-verify to accept it)")
    part.replace(target)
    return FetchedFile(name=planned.name, split=planned.split, url=planned.url, path=str(target), size=size,
                       sha256=digest, verified=pinned is not None, cached=False, resumed_from=resumed_from,
                       requests=requests)


def fetch_autotts(store: Store, request: FetchRequest, progress: Progress | None = None,
                  manifest: Manifest | None = None) -> FetchResult:
    """Download, verify, validate, then import the selected reference files; nothing is imported on any failure.

    Every file is downloaded and verified, every file parsed and validated, and every name checked against
    the store (an environment with other content needs ``replace``) before the first import. Each import is
    one transaction and a no-op for content already stored; a stored environment in the wrong split is
    moved to the split the benchmark belongs to (AIME24 search; AIME25, HMMT25 held-out).
    """
    manifest = manifest or load_manifest()
    plan = plan_fetch(request, manifest)
    directory = cache_dir(store)
    fetched = [download_file(f, directory, verify=request.verify, timeout_s=request.timeout_s, progress=progress)
               for f in plan.files]
    loaded = [(f, read_records(Path(got.path))) for f, got in zip(plan.files, fetched, strict=True)]
    stored = {e.name: e for e in list_environments(store)}
    for f, records in loaded:
        old = stored.get(f.name)
        if old is not None and old.content_hash != content_hash(records) and not request.replace:
            raise FetchError(f"environment {f.name} already exists with different content; pass --replace to "
                             "overwrite it (nothing was imported)")
    environments: list[FetchedEnvironment] = []
    for (f, records), got in zip(loaded, fetched, strict=True):
        spec = {"repository": manifest.repository, "commit": manifest.commit, "url": f.url, "sha256": got.sha256,
                "verified": got.verified}
        name, created = import_records(store, f.model, f.dataset, records, source=f.url, origin="fetch", spec=spec,
                                       replace=request.replace, split=f.split)
        retagged = None
        old = stored.get(name)
        if not created and old is not None and old.split != f.split:
            set_split(store, [name], f.split)
            retagged = old.split
        environments.append(FetchedEnvironment(name=name, split=f.split, created=created, retagged_from=retagged))
    return FetchResult(base_url=plan.base_url, files=fetched, environments=environments,
                       unpinned_skipped=plan.unpinned_skipped)
