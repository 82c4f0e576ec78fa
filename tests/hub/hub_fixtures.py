"""A local stand-in for the Hugging Face hub, published test models, and their fixtures.

Test modules import the fixtures they use from here (``from hub_fixtures import ...``).

:class:`FakeHub` is a threaded HTTP server on 127.0.0.1 that answers the
endpoints ``huggingface_hub`` calls: ``HEAD``/``GET /{repo}/resolve/{revision}/{file}``
(with ``X-Repo-Commit``, ``ETag``, ``Content-Length``, ``Range`` support and the
``X-Error-Code`` of the hub's 404s) for downloads; ``/api/models/{repo}/tree/{revision}``,
``/api/models/{repo}/paths-info/{revision}`` and ``/api/models/{repo}/revision/{revision}``
for listings and file hashes (``.safetensors`` files are LFS files with their SHA-256);
and ``/api/repos/create``, ``/api/validate-yaml``, ``/api/models/{repo}/preupload/{revision}``
and ``/api/models/{repo}/commit/{revision}`` for uploads. A repository keeps every
commit, with branches and tags; a gated or private one answers 401 to requests
without :attr:`FakeHub.token`. The server can cut a transfer short to test
interrupted downloads, and it logs every request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import torch

from mtlmusic.architectures import build_network, model_name
from mtlmusic.frontend import Scaler
from mtlmusic.files import file_sha256
from mtlmusic.registry import Registry, RegistryEntry
from mtlmusic.modelfile import read_config, save_model_file

REPO = "tester/mtlmusic-models"
#: The token that opens gated and private repositories of the fake hub.
TOKEN = "hf_fake_token"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/?]+/[^/?]+)(?:/(?P<verb>preupload|commit|tree|paths-info|revision)"
                  r"/(?P<revision>[^/?]+)(?:/(?P<path>[^?]*))?)?(?:\?|$)")


def git_blob_id(data: bytes) -> str:
    """The git object id of a file's content, as the hub reports it for files not stored in LFS."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Repositories held in memory, served over HTTP like the hub."""

    def __init__(self):
        #: repository -> files at the head of ``main`` (the dict of that commit: edit it to change the head).
        self.files: dict[str, dict[str, bytes]] = {}
        #: repository -> head commit of ``main``.
        self.commits: dict[str, str] = {}
        #: repository -> commit -> files.
        self.snapshots: dict[str, dict[str, dict[str, bytes]]] = {}
        #: repository -> branch or tag -> commit.
        self.refs: dict[str, dict[str, str]] = {}
        #: repository -> "gated" or "private": requests without ``Authorization: Bearer TOKEN`` get a 401.
        self.access: dict[str, str] = {}
        self.token = TOKEN
        self.requests: list[tuple[str, str, str | None]] = []
        #: file name -> bytes to send before dropping the connection, on the next full GET of that file.
        self.truncate: dict[str, int] = {}
        #: answer Range requests with 500 instead of 206.
        self.refuse_range = False
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def publish(self, repo: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Commit ``files`` on ``branch`` of ``repo`` (created from ``main`` if new); returns the commit id."""
        with self._lock:
            refs = self.refs.setdefault(repo, {})
            snapshots = self.snapshots.setdefault(repo, {})
            base = refs.get(branch, refs.get("main"))
            content = {**(snapshots[base] if base else {}), **files}
            digest = hashlib.sha1(repo.encode())
            for name in sorted(content):
                digest.update(name.encode() + hashlib.sha256(content[name]).digest())
            commit = digest.hexdigest()
            snapshots.setdefault(commit, content)
            refs[branch] = commit
            if branch == "main":
                self.files[repo], self.commits[repo] = snapshots[commit], commit
            return commit

    def tag(self, repo: str, tag: str, commit: str | None = None) -> None:
        """Point ``tag`` at ``commit`` (default: the head of main)."""
        self.refs[repo][tag] = commit or self.commits[repo]

    def resolve(self, repo: str, revision: str) -> str | None:
        """The commit a branch, tag or commit id names in ``repo``, or None."""
        revision = unquote(revision)
        if revision in self.snapshots.get(repo, {}):
            return revision
        return self.refs.get(repo, {}).get(revision)

    def gets(self, file: str) -> list[str | None]:
        """The Range header of every GET of ``file`` so far (None for a full GET)."""
        return [rng for method, path, rng in self.requests if method == "GET" and path.endswith("/" + file)]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _file_info(path: str, data: bytes) -> dict:
    info = {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}
    if path.endswith(".safetensors"):
        info["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return info


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                   send_body: bool = True) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def _json(self, payload) -> None:
            self._reply(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

        def _refused(self, repo: str, send_body: bool = True) -> bool:
            """Answer like the hub when ``repo`` is missing, or gated/private and the token is not sent."""
            if repo not in hub.files:
                self._reply(404, b"not found", {"X-Error-Code": "RepoNotFound"}, send_body)
                return True
            if repo in hub.access and self.headers.get("Authorization") != f"Bearer {hub.token}":
                code = "GatedRepo" if hub.access[repo] == "gated" else "RepoNotFound"
                self._reply(401, b"unauthorized", {"X-Error-Code": code}, send_body)
                return True
            return False

        def _resolve(self, send_body: bool) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Range")))
            match = _RESOLVE.match(self.path)
            if match is None:
                return self._reply(404, b"not found", {"X-Error-Code": "RepoNotFound"}, send_body)
            if self._refused(match["repo"], send_body):
                return None
            commit = hub.resolve(match["repo"], match["revision"])
            if commit is None:
                return self._reply(404, b"not found", {"X-Error-Code": "RevisionNotFound"}, send_body)
            data = hub.snapshots[match["repo"]][commit].get(unquote(match["file"]))
            if data is None:
                return self._reply(404, b"not found", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit},
                                   send_body)
            headers = {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                       "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            requested = self.headers.get("Range")
            if send_body and requested:
                if hub.refuse_range:
                    return self._reply(500, b"range requests are broken", {})
                start = int(re.match(r"bytes=(\d+)-", requested).group(1))
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                return self._reply(206, data[start:], headers)
            cut = hub.truncate.pop(match["file"], None) if send_body else None
            if cut is None:
                return self._reply(200, data, headers, send_body)
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True

        def _snapshot(self, match) -> dict[str, bytes] | None:
            """The files of the API request's repository at its revision (None: an error was answered)."""
            if self._refused(match["repo"]):
                return None
            commit = hub.resolve(match["repo"], match["revision"] or "main")
            if commit is None:
                self._reply(404, b"not found", {"X-Error-Code": "RevisionNotFound"})
                return None
            return hub.snapshots[match["repo"]][commit]

        def do_HEAD(self):
            self._resolve(send_body=False)

        def do_GET(self):
            match = _API.match(self.path)
            if match is None:
                return self._resolve(send_body=True)
            hub.requests.append(("GET", self.path, None))
            files = self._snapshot(match)
            if files is None:
                return None
            if match["verb"] in ("revision", None):
                return self._json({"id": match["repo"], "sha": hub.resolve(match["repo"], match["revision"] or "main"),
                                   "private": match["repo"] in hub.access,
                                   "siblings": [{"rfilename": name} for name in sorted(files)]})
            if match["verb"] != "tree":
                return self._reply(404, b"not found")
            recursive = parse_qs(urlsplit(self.path).query).get("recursive", [""])[0].lower() == "true"
            folder = unquote(match["path"] or "").strip("/")
            prefix = f"{folder}/" if folder else ""
            entries, folders = [], set()
            for name in sorted(files):
                if not name.startswith(prefix):
                    continue
                rest = name[len(prefix):]
                if recursive or "/" not in rest:
                    entries.append(_file_info(name, files[name]))
                else:
                    folders.add(prefix + rest.split("/")[0])
            entries += [{"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest()}
                        for f in sorted(folders)]
            return self._json(entries)

        def do_POST(self):
            hub.requests.append(("POST", self.path, None))
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/api/repos/create":
                request = json.loads(body)
                repo = f"{request['organization']}/{request['name']}"
                if repo not in hub.files:
                    hub.publish(repo, {})
                return self._json({"url": f"{hub.url}/{repo}"})
            if self.path == "/api/validate-yaml":
                return self._json({"errors": [], "warnings": []})
            match = _API.match(self.path)
            if match is None:
                return self._reply(404, b"not found", {"X-Error-Code": "RepoNotFound"})
            if match["verb"] == "paths-info":
                files = self._snapshot(match)
                if files is not None:
                    wanted = parse_qs(body.decode()).get("paths", [])
                    self._json([_file_info(path, files[path]) for path in wanted if path in files])
                return None
            if self._refused(match["repo"]):
                return None
            if match["verb"] == "preupload":
                files = json.loads(body)["files"]
                return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                              "oid": None} for f in files]})
            added = {}
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            commit = hub.publish(match["repo"], added, branch=unquote(match["revision"]))
            return self._json({"commitUrl": f"{hub.url}/{match['repo']}/commit/{commit}", "commitOid": commit,
                               "pullRequestUrl": None})

    return Handler


@pytest.fixture
def fake_hub():
    hub = FakeHub()
    yield hub
    hub.stop()


@pytest.fixture
def hub_env(fake_hub, tmp_path, monkeypatch):
    """Point mtlmusic at the fake hub, with an empty cache and a registry file of its own."""
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("MTLMUSIC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MTLMUSIC_REGISTRY", str(tmp_path / "registry.json"))
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "MTLMUSIC_HUB_REPO", "MTLMUSIC_HUB_REVISION"):
        monkeypatch.delenv(name, raising=False)
    return fake_hub


def random_scaler(seed: int) -> Scaler:
    g = torch.Generator().manual_seed(seed)
    return Scaler(-40 + 10 * torch.rand(128, generator=g), 10 + 5 * torch.rand(128, generator=g))


def make_model_file(folder: Path, architecture: str, sources: list[str], seed: int = 0,
                    scaler_seed: int = 0) -> Path:
    """A model file with random weights and BatchNorm statistics, named after what it is."""
    torch.manual_seed(seed)
    network = build_network(architecture, sources)
    for module in network.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    name = model_name(architecture, sources)
    return save_model_file(folder / f"{name}.safetensors", network, random_scaler(scaler_seed), name=name)


@pytest.fixture
def published(hub_env, tmp_path):
    """``ssr-self``, ``ssr-bpm`` and ``mscr2-self-bpm`` on the fake hub and in the registry; returns the local files."""
    folder = tmp_path / "made"
    folder.mkdir()
    files = {"ssr-self": make_model_file(folder, "SS-R", ["self"], seed=1),
             "ssr-bpm": make_model_file(folder, "SS-R", ["bpm"], seed=2),
             "mscr2-self-bpm": make_model_file(folder, "MS-CR@2", ["self", "bpm"], seed=3)}
    commit = hub_env.publish(REPO, {f"{name}.safetensors": path.read_bytes() for name, path in files.items()})
    write_registry(tmp_path / "registry.json", files, commit)
    return files


def write_registry(path: Path, files: dict[str, Path], commit: str, sha256: dict[str, str] | None = None) -> None:
    entries = {}
    for name, file in files.items():
        config = read_config(file)
        entries[name] = RegistryEntry(name, f"{name}.safetensors", (sha256 or {}).get(name, file_sha256(file)),
                                      config["architecture"], tuple(config["sources"]),
                                      2 * 256 * len(config["representation_blocks"]))
    Registry(REPO, commit, entries).write(path)


@pytest.fixture
def hub_tools():
    """The helpers above, as a fixture."""
    return SimpleNamespace(repo=REPO, token=TOKEN, make_model_file=make_model_file, write_registry=write_registry,
                           random_scaler=random_scaler)
