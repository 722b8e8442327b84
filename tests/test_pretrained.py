"""Official network names, the download cache and its errors (downloads from a loopback server only)."""

import contextlib
import hashlib
import http.server
import os
import subprocess
import sys
import threading

import pytest

from conftest import FIXTURES
from stylegan_tl import pretrained
from stylegan_tl.errors import NetworkPickleError
from stylegan_tl.pretrained import OFFICIAL_NETWORKS, cache_path_for, resolve_network_pkl

FIXTURE_PKL = FIXTURES / "C_v2_orig_orig_r16" / "network.pkl"


@contextlib.contextmanager
def serve(routes, cut=None):
    """A 127.0.0.1 HTTP server answering GET ``path`` with ``routes[path]`` bytes (404 otherwise);
    with ``cut``, only the first ``cut`` bytes are sent (Content-Length still announces them all).

    Yields (base URL, list of requested paths).
    """
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write((body or b"")[:cut])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("STYLEGAN_TL_CACHE", str(folder))
    return folder


def test_official_names():
    base = "https://nvlabs-fi-cdn.nvidia.com/stylegan2"
    assert OFFICIAL_NETWORKS["stylegan2-church-config-f"] == f"{base}/networks/stylegan2-church-config-f.pkl"
    assert OFFICIAL_NETWORKS["stylegan2-ffhq-config-a"] == f"{base}/networks/stylegan2-ffhq-config-a.pkl"
    assert OFFICIAL_NETWORKS["stylegan2-car-config-e-Gorig-Dresnet"].endswith(
        "/networks/table2/stylegan2-car-config-e-Gorig-Dresnet.pkl")
    assert OFFICIAL_NETWORKS["stylegan2-ada-metfaces"] == f"{base}-ada/pretrained/metfaces.pkl"
    assert OFFICIAL_NETWORKS["stylegan2-ada-ffhq256"].endswith(
        "/transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl")
    assert OFFICIAL_NETWORKS["karras2019stylegan-ffhq-1024x1024"].endswith("id=1MEGjdvVpUsu1jB4zrXZN7Y4kBBOzizDQ")
    assert len([n for n in OFFICIAL_NETWORKS if n.endswith("-config-f")]) == 5


def test_cache_paths(cache, monkeypatch, tmp_path):
    assert cache_path_for("stylegan2-church-config-f") == str(cache / "stylegan2-church-config-f.pkl")
    assert cache_path_for("ffhq256") == str(cache / "stylegan2-ada-ffhq256.pkl")  # ADA's --resume name
    assert cache_path_for(OFFICIAL_NETWORKS["stylegan2-ada-ffhq"]) == str(cache / "stylegan2-ada-ffhq.pkl")
    a, b = cache_path_for("http://a.example/x/net.pkl"), cache_path_for("http://b.example/net.pkl")
    assert os.path.basename(a).startswith("net-") and a != b
    assert cache_path_for("stylegan2-cat-config-f", cache_dir="/elsewhere") == "/elsewhere/stylegan2-cat-config-f.pkl"
    monkeypatch.delenv("STYLEGAN_TL_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = tmp_path / ".cache" / "stylegan_tl" / "networks" / "stylegan2-cat-config-f.pkl"
    assert cache_path_for("stylegan2-cat-config-f") == str(expected)


def test_local_paths(tmp_path):
    assert resolve_network_pkl(FIXTURE_PKL) == str(FIXTURE_PKL)
    with pytest.raises(NetworkPickleError, match="no such file"):
        resolve_network_pkl(tmp_path / "missing.pkl")
    with pytest.raises(NetworkPickleError, match="is a directory"):
        resolve_network_pkl(tmp_path)


def test_unknown_name_lists_close_names():
    with pytest.raises(NetworkPickleError) as err:
        resolve_network_pkl("stylegan2-church-config-g")
    assert "stylegan2-church-config-f" in str(err.value) and "not an official network name" in str(err.value)


def test_url_downloads_once_with_progress(cache, capsys):
    data = FIXTURE_PKL.read_bytes()
    with serve({"/nets/net.pkl": data}) as (base, requests):
        url = f"{base}/nets/net.pkl"
        path = resolve_network_pkl(url)
        assert path == cache_path_for(url) and open(path, "rb").read() == data
        assert resolve_network_pkl(url) == path
    assert requests == ["/nets/net.pkl"]
    name = os.path.basename(path)
    assert sorted(os.listdir(cache)) == [name, f"{name}.sha256"]  # no temp file left behind
    assert open(f"{path}.sha256").read() == f"{hashlib.sha256(data).hexdigest()}  {name}\n"  # sha256sum -c
    assert "(100%)" in capsys.readouterr().err


def test_official_name_downloads_into_its_cache_name(cache, monkeypatch):
    with serve({"/church.pkl": FIXTURE_PKL.read_bytes()}) as (base, requests):
        monkeypatch.setitem(OFFICIAL_NETWORKS, "stylegan2-church-config-f", f"{base}/church.pkl")
        path = resolve_network_pkl("stylegan2-church-config-f")
    assert path == str(cache / "stylegan2-church-config-f.pkl") and os.path.getsize(path) == FIXTURE_PKL.stat().st_size


@pytest.mark.parametrize("routes, reason", [
    ({}, "Not Found"),
    ({"/net.pkl": b"<html>Google Drive can't scan this file for viruses</html>"}, "not a pickle (a web page?)"),
])
def test_download_failures_name_url_and_cache_path(cache, routes, reason):
    with serve(routes) as (base, _):
        url = f"{base}/net.pkl"
        with pytest.raises(NetworkPickleError) as err:
            resolve_network_pkl(url)
    message = str(err.value)
    assert url in message and reason in message and f"place it at {cache_path_for(url)}" in message
    assert "\n" not in message and not os.listdir(cache)


def test_offline_error(cache, monkeypatch):
    with serve({}) as (base, _):
        pass  # the server is gone: connections are refused, as offline
    monkeypatch.setitem(OFFICIAL_NETWORKS, "stylegan2-horse-config-f", f"{base}/horse.pkl")
    with pytest.raises(NetworkPickleError) as err:
        resolve_network_pkl("stylegan2-horse-config-f")
    assert f"cannot download {base}/horse.pkl" in str(err.value)
    assert str(cache / "stylegan2-horse-config-f.pkl") in str(err.value)


def test_a_manually_placed_file_is_used_without_network(cache):
    cache.mkdir()
    (cache / "stylegan2-horse-config-f.pkl").write_bytes(FIXTURE_PKL.read_bytes())
    assert resolve_network_pkl("stylegan2-horse-config-f") == str(cache / "stylegan2-horse-config-f.pkl")



def test_a_truncated_download_is_deleted_not_cached(cache):
    data = FIXTURE_PKL.read_bytes()
    with serve({"/net.pkl": data}, cut=len(data) // 2) as (base, _):
        url = f"{base}/net.pkl"
        with pytest.raises(NetworkPickleError) as err:
            resolve_network_pkl(url)
    assert f"got {len(data) // 2} of the {len(data)} bytes announced; the partial download was deleted" in str(err.value)
    assert os.listdir(cache) == []


def test_a_download_that_differs_from_its_pinned_sha256_is_deleted(cache, monkeypatch):
    with serve({"/church.pkl": FIXTURE_PKL.read_bytes()}) as (base, _):
        monkeypatch.setitem(OFFICIAL_NETWORKS, "stylegan2-church-config-f", f"{base}/church.pkl")
        monkeypatch.setitem(pretrained.PINNED_SHA256, "stylegan2-church-config-f", ("0" * 64, "a test pin"))
        with pytest.raises(NetworkPickleError, match=r"differs from the pinned 0{64} \(a test pin\); the download "
                                                     r"was deleted"):
            resolve_network_pkl("stylegan2-church-config-f")
        assert os.listdir(cache) == []
        digest = hashlib.sha256(FIXTURE_PKL.read_bytes()).hexdigest()
        monkeypatch.setitem(pretrained.PINNED_SHA256, "stylegan2-church-config-f", (digest, "a test pin"))
        assert os.path.getsize(resolve_network_pkl("stylegan2-church-config-f")) == FIXTURE_PKL.stat().st_size


def test_a_cached_file_that_changed_since_its_download_is_refused_not_deleted(cache):
    data = FIXTURE_PKL.read_bytes()
    with serve({"/net.pkl": data}) as (base, _):
        path = resolve_network_pkl(f"{base}/net.pkl")
    with open(path, "r+b") as f:  # damage one byte (same size)
        f.seek(1000)
        f.write(bytes([data[1000] ^ 0xFF]))
    with pytest.raises(NetworkPickleError, match="its SHA-256 differs from the one recorded at its download"):
        resolve_network_pkl(f"{base}/net.pkl")
    assert os.path.exists(path)


def test_an_unusable_cache_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    long_url = "http://127.0.0.1:9/" + "n" * 300 + ".pkl"
    assert len(os.path.basename(cache_path_for(long_url))) < 100  # cut to fit any file system
    code = ("import sys\nfrom stylegan_tl.errors import StyleGANTLError\n"
            "from stylegan_tl.pretrained import resolve_network_pkl\n"
            "try:\n    resolve_network_pkl('stylegan2-church-config-f')\n"
            "except StyleGANTLError as e:\n    print('error:', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, STYLEGAN_TL_CACHE=str(tmp_path / "file" / "cache"),
                                   PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert proc.stdout == (f"error: {tmp_path / 'file' / 'cache'}: cannot create the download cache folder "
                           "(Not a directory); set STYLEGAN_TL_CACHE to a writable folder\n"), proc.stderr
