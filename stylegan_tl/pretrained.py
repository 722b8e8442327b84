"""NVIDIA's official TF checkpoints by short name, and URL downloads into a local cache. No TensorFlow.

``resolve_network_pkl(spec)`` turns a local path, an URL or a short name such as
``'stylegan2-church-config-f'`` into a local file. URLs and names are downloaded once into the cache
folder (``$STYLEGAN_TL_CACHE``, else ``~/.cache/stylegan_tl/networks``), to a hidden temporary file
that is renamed when complete. Offline, the error names the URL and the exact cache path where a
copy fetched by other means can be placed.

Integrity: a download must have as many bytes as the server's Content-Length announced, and the
SHA-256 pinned in ``PINNED_SHA256`` where there is one; otherwise it is deleted and the error says
so. Every download records its SHA-256 in ``<file>.sha256`` (``sha256sum`` format) beside it; a
cached file that no longer matches its record (or its pin) is refused, not deleted.
"""

import difflib
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request

from superres_tf.conventions import StatusLine

from .atomic import atomic_write
from .errors import NetworkPickleError

_DRIVE = "https://drive.google.com/uc?id="
_V2 = "https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/"
_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada/pretrained/"


def _official_networks() -> dict:
    """Short name -> URL. v1 (Google Drive, Karras et al. 2019), v2 (configs a-f), ADA-TF."""
    nets = {
        "karras2019stylegan-ffhq-1024x1024": _DRIVE + "1MEGjdvVpUsu1jB4zrXZN7Y4kBBOzizDQ",
        "karras2019stylegan-celebahq-1024x1024": _DRIVE + "1MGqJl28pN4t7SAtSrPdSRJSQJqahkzUf",
        "karras2019stylegan-bedrooms-256x256": _DRIVE + "1MOSKeGF0FJcivpBI7s63V9YHloUTORiF",
        "karras2019stylegan-cars-512x384": _DRIVE + "1MJ6iCfNtMIRicihwRorsM3b7mmtmK9c3",
        "karras2019stylegan-cats-256x256": _DRIVE + "1MQywl0FNt6lHu8E_EUqnRbviagS7fbiJ",
    }
    v2 = [f"stylegan2-{d}-config-{c}" for c in "af" for d in ("car", "cat", "church", "ffhq", "horse")]
    v2 += [f"stylegan2-{d}-config-{c}" for c in "bcde" for d in ("car", "ffhq")]
    nets.update((name, f"{_V2}{name}.pkl") for name in v2)
    nets.update((f"stylegan2-{d}-config-e-G{g}-D{k}", f"{_V2}table2/stylegan2-{d}-config-e-G{g}-D{k}.pkl")
                for d in ("car", "ffhq") for g in ("orig", "skip", "resnet") for k in ("orig", "skip", "resnet"))
    for d in ("metfaces", "brecahad", "afhqcat", "afhqdog", "afhqwild", "cifar10", "ffhq"):
        nets[f"stylegan2-ada-{d}"] = f"{_ADA}{d}.pkl"
    transfer = {  # StyleGAN2-ADA train.py --resume presets
        "ffhq256": "ffhq-res256-mirror-paper256-noaug.pkl",
        "ffhq512": "ffhq-res512-mirror-stylegan2-noaug.pkl",
        "ffhq1024": "ffhq-res1024-mirror-stylegan2-noaug.pkl",
        "celebahq256": "celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl",
        "lsundog256": "lsundog-res256-paper256-kimg100000-noaug.pkl",
    }
    nets.update((f"stylegan2-ada-{k}", f"{_ADA}transfer-learning-source-nets/{v}") for k, v in transfer.items())
    return nets


OFFICIAL_NETWORKS = _official_networks()
# Official short name -> (SHA-256 hex, where the value was published). NVIDIA publishes no checksums for
# these files and none could be obtained from an authoritative source, so none is pinned yet; a
# download is still checked against Content-Length and recorded in a .sha256 file (see BUILD_NOTES).
PINNED_SHA256 = {}
# ADA's own --resume names, accepted as aliases.
ALIASES = {k: f"stylegan2-ada-{k}" for k in ("ffhq256", "ffhq512", "ffhq1024", "celebahq256", "lsundog256")}


def cache_dir_default() -> str:
    """``$STYLEGAN_TL_CACHE`` if set, else ``~/.cache/stylegan_tl/networks``."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "stylegan_tl", "networks")
    return os.environ.get("STYLEGAN_TL_CACHE") or default


def _is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def _official_name(spec: str):
    """The official short name for a name, alias, ``name.pkl`` or official URL; None otherwise."""
    name = ALIASES.get(spec, spec[:-4] if spec.endswith(".pkl") else spec)
    if name in OFFICIAL_NETWORKS:
        return name
    return next((k for k, url in OFFICIAL_NETWORKS.items() if url == spec), None)


def cache_path_for(spec: str, cache_dir: str = None) -> str:
    """Where the download of an URL or official name is (or will be) stored.

    Official networks are stored as ``<short name>.pkl``; other URLs as
    ``<file stem>-<8 hex digits of the URL's sha1>.pkl`` (the stem cut to 80 safe characters), so
    equal file names from different servers do not collide.
    """
    folder = cache_dir or cache_dir_default()
    name = _official_name(spec)
    if name is None:
        if not _is_url(spec):
            raise NetworkPickleError(f"{spec}: not an URL or an official network name")
        stem = os.path.splitext(os.path.basename(urllib.parse.urlparse(spec).path))[0]
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", urllib.parse.unquote(stem))[:80] or "network"
        name = f"{stem}-{hashlib.sha1(spec.encode('utf-8')).hexdigest()[:8]}"
    return os.path.join(folder, f"{name}.pkl")


def resolve_network_pkl(spec, cache_dir: str = None) -> str:
    """A local path for a path, URL or official short name (see ``OFFICIAL_NETWORKS``).

    URLs and names are downloaded once into ``cache_dir`` (default :func:`cache_dir_default`) with
    a one-line progress display on stderr; later calls return the cached file.
    """
    spec = os.fspath(spec)
    if os.path.isfile(spec):
        return spec
    if not (_is_url(spec) or _official_name(spec)):
        if os.path.isdir(spec):
            raise NetworkPickleError(f"{spec}: is a directory, not a network pickle")
        if os.path.exists(spec):  # a FIFO, a device: reading it could block or never end
            raise NetworkPickleError(f"{spec}: not a regular file")
        if os.sep in spec or spec.endswith(".pkl") or os.path.exists(spec):
            raise NetworkPickleError(f"{spec}: no such file")
        close = difflib.get_close_matches(spec, list(OFFICIAL_NETWORKS) + list(ALIASES), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see docs/pickles.md for the official names"
        raise NetworkPickleError(f"{spec}: no such file and not an official network name{hint}")
    name = _official_name(spec)
    url = OFFICIAL_NETWORKS.get(name or "", spec)
    path = cache_path_for(spec, cache_dir)
    if os.path.isfile(path):
        _check_cached(path, name)
    else:
        _download(url, path, name)
    return path


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


_checked = {}  # (path, size, mtime_ns) -> True: files already verified in this process


def _check_cached(path: str, name) -> None:
    """Refuse a cached file that differs from the SHA-256 recorded at its download, or from its pin."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    record = path + ".sha256"
    expected, source = PINNED_SHA256.get(name, (None, None))
    if key in _checked or not (expected or os.path.exists(record)):
        return
    if os.path.exists(record):
        try:
            with open(record, encoding="ascii") as f:
                recorded = f.read(200).split()[0]
        except (OSError, ValueError, IndexError):
            recorded = "(unreadable)"
        expected, source = expected or recorded, f"recorded at its download in {record}"
    if _sha256_of(path) != expected:
        raise NetworkPickleError(f"{path}: its SHA-256 differs from the one {source}: the file changed or is "
                                 f"damaged; delete it (and {os.path.basename(record)}) to download it again")
    _checked[key] = True


def _fetch(url: str, out, digest, label: str) -> tuple:
    """Stream ``url`` into ``out`` and ``digest``; returns (bytes received, Content-Length or 0, first byte)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0)
        progress = StatusLine()
        done, head = 0, b""
        while chunk := response.read(1 << 20):
            head = head or chunk[:1]
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            progress.show(f"downloading {label}: {_megabytes(done, total)}")
        progress.show(f"downloading {label}: {_megabytes(done, total)}", final=True)
    return done, total, head


def _download(url: str, path: str, name) -> None:
    """Stream ``url`` to a hidden temp file beside ``path``; check its length, pin and first byte;
    rename it to ``path`` and record its SHA-256 in ``path.sha256``. A failed check deletes it."""
    manual = f"download it yourself and place it at {path}"
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise NetworkPickleError(f"{folder}: cannot create the download cache folder ({e.strerror}); "
                                 f"set STYLEGAN_TL_CACHE to a writable folder") from None
    digest = hashlib.sha256()
    with atomic_write(path) as out:
        try:
            done, total, head = _fetch(url, out, digest, os.path.basename(path))
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e or type(e).__name__
            raise NetworkPickleError(f"cannot download {url} ({reason}); {manual}") from None
        deleted = "the partial download was deleted"
        if total and done != total:
            raise NetworkPickleError(f"cannot download {url}: got {done} of the {total} bytes announced; "
                                     f"{deleted}; try again or {manual}")
        expected, source = PINNED_SHA256.get(name, (None, None))
        if expected and digest.hexdigest() != expected:
            raise NetworkPickleError(f"cannot download {url}: SHA-256 {digest.hexdigest()} differs from the "
                                     f"pinned {expected} ({source}); the download was deleted; {manual}")
        if head != b"\x80":  # every pickle of protocol >= 2 starts with PROTO; HTML pages do not
            raise NetworkPickleError(f"cannot download {url}: the server sent something that is not a pickle "
                                     f"(a web page?); {deleted}; {manual}")
    with atomic_write(path + ".sha256") as f:
        f.write(f"{digest.hexdigest()}  {os.path.basename(path)}\n".encode("ascii"))


def _megabytes(done: int, total: int) -> str:
    """``'1.5/3.0 MB (50%)'``, or ``'1.5 MB'`` when the total is unknown."""
    if total:
        return f"{done / 1e6:.1f}/{total / 1e6:.1f} MB ({100 * done // total}%)"
    return f"{done / 1e6:.1f} MB"
