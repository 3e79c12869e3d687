"""A local stand-in for the Hugging Face Hub (HF_ENDPOINT) serving repo folders, for --download tests.

It speaks what huggingface_hub's model_info and snapshot_download call (checked against
huggingface_hub 2.4): GET /api/models/{repo}[/revision/{rev}] (id, sha, siblings), GET
/api/models/{repo}/tree/{rev}?recursive=true (files with size, oid, lfs), and HEAD / GET
/{repo}/resolve/{rev}/{path} (ETag, X-Repo-Commit, Content-Length; Range answered with 206).
`drop` holds paths whose GET is cut off without an answer (a network failure); `requests` logs
(method, path) of every request.
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SHA = "0123456789abcdef0123456789abcdef01234567"  # the one commit every repo is at


class FakeHub:
    def __init__(self, root: Path) -> None:
        self.root = root  # root/<owner>/<name>/... are the repos
        self.requests: list[tuple[str, str]] = []
        self.drop: set[str] = set()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def send(self, status: int, body: bytes, headers: dict | None = None, head: bool = False) -> None:
                self.send_response(status)
                for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def answer(self, head: bool) -> None:
                path = self.path.split("?")[0]
                hub.requests.append((self.command, path))
                if path.startswith("/api/models/"):
                    rest = path[len("/api/models/"):].split("/")
                    repo = hub.root / rest[0] / rest[1]
                    if not repo.is_dir():
                        return self.send(404, b'{"error": "Repository not found"}', head=head)
                    files = sorted(f for f in repo.rglob("*") if f.is_file())
                    if len(rest) > 2 and rest[2] == "tree":
                        listing = [{"type": "file", "path": f.relative_to(repo).as_posix(), "size": f.stat().st_size,
                                    "oid": hashlib.sha1(f.read_bytes()).hexdigest(),
                                    **({"lfs": {"oid": hashlib.sha256(f.read_bytes()).hexdigest(),
                                                "size": f.stat().st_size, "pointerSize": 134}}
                                       if f.suffix == ".safetensors" else {})} for f in files]
                        return self.send(200, json.dumps(listing).encode(), {"Content-Type": "application/json"}, head)
                    info = {"id": f"{rest[0]}/{rest[1]}", "sha": SHA,
                            "siblings": [{"rfilename": f.relative_to(repo).as_posix()} for f in files]}
                    return self.send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
                owner, name, resolve, _rev, file = (path.lstrip("/").split("/", 4) + [""] * 5)[:5]
                target = hub.root / owner / name / file
                if resolve != "resolve" or not target.is_file():
                    return self.send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, head)
                if not head and file in hub.drop:
                    self.close_connection = True
                    return
                data = target.read_bytes()
                headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Repo-Commit": SHA}
                start = self.headers.get("Range", "").removeprefix("bytes=").split("-")[0]
                if start and not head:
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                    return self.send(206, data[int(start):], headers)
                self.send(200, data, headers, head)

            def do_GET(self):
                self.answer(head=False)

            def do_HEAD(self):
                self.answer(head=True)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def gets(self, repo: str) -> list[str]:
        """The files of `repo` fetched with GET /resolve (in order)."""
        prefix = f"/{repo}/resolve/"
        return [p[len(prefix):].split("/", 1)[1] for m, p in self.requests if m == "GET" and p.startswith(prefix)]

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
