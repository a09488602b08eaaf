"""A stand-in for huggingface.co on 127.0.0.1: answers what huggingface_hub asks when it fetches, as the hub does.

huggingface_hub asks HEAD for a file's commit, ETag and size, then GETs it (with a Range header
to resume); for a whole repository it first asks the API for the repository's files.
`cut_after` makes the first full GET stop after that many bytes, as a dropped link would.
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")
REPO_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/?]+)(/revision/[^/?]+)?(\?.*)?$")
TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/?]+)/tree/[^?]+(\?.*)?$")


class HubServer:
    """Serves {(repo, filename): bytes}; records (method, path, Range header) of every request."""

    def __init__(self, files: dict[tuple[str, str], bytes], cut_after: int | None = None):
        self.files, self.cut_after, self.requests = files, cut_after, []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                info = REPO_INFO.match(self.path) or TREE.match(self.path)
                if info and any(repo == info["repo"] for repo, _ in hub.files):
                    mine = [(name, data) for (repo, name), data in hub.files.items() if repo == info["repo"]]
                    tree = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                            for name, data in mine]
                    listing = json.dumps(tree if "/tree/" in self.path else {
                        "id": info["repo"], "sha": COMMIT, "siblings": [{"rfilename": n} for n, _ in mine]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(listing)))
                    self.end_headers()
                    self.wfile.write(listing if body else b"")
                    return
                match = RESOLVE.match(self.path)
                content = match and hub.files.get((match["repo"], match["filename"]))
                if content is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-"))[1])
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
                self.send_header("Content-Length", str(len(content) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
                self.end_headers()
                if not body:
                    return
                if hub.cut_after is not None and not start:
                    cut, hub.cut_after = hub.cut_after, None
                    self.wfile.write(content[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # the link drops mid-file
                    return
                self.wfile.write(content[start:])

        return Handler


class SilentHub:
    """A host that takes every connection and never answers (a captive portal, a stalled proxy).

    It reads what each connection asks ("GET /api/..." request lines, in `asked`) and keeps it open.
    """

    def __init__(self):
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._connections: list[socket.socket] = []
        self.asked: list[str] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def __enter__(self) -> SilentHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._socket.close()
        for connection in self._connections:
            connection.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed by __exit__
                return
            self._connections.append(connection)
            connection.settimeout(5.0)
            try:
                self.asked.append(connection.recv(4096).decode(errors="replace").split("\r\n", 1)[0])
            except OSError:  # it asked nothing
                pass
