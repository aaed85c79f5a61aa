"""Real git repositories for the tests: a bare origin, a work clone that commits and pushes,
and a smart-HTTP server (`git http-backend`) on loopback with Basic authentication."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Tess Ter",
    "GIT_AUTHOR_EMAIL": "tess@example.org",
    "GIT_COMMITTER_NAME": "Tess Ter",
    "GIT_COMMITTER_EMAIL": "tess@example.org",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path, check: bool = True) -> str:
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


class Repo:
    """`origin.git` (bare, default branch main) and `work`, a clone that pushes to it."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.origin = root / "origin.git"
        self.work = root / "work"
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.origin), cwd=root)
        git("init", "--quiet", "--initial-branch=main", str(self.work), cwd=root)
        git("remote", "add", "origin", str(self.origin), cwd=self.work)
        (self.work / "deployments").mkdir()

    @property
    def url(self) -> str:
        return self.origin.as_uri()

    def write(self, name: str, text: str) -> None:
        path = self.work / "deployments" / name
        path.write_text(text)

    def remove(self, name: str) -> None:
        (self.work / "deployments" / name).unlink()

    def commit(self, message: str, *flags: str) -> str:
        git("add", "-A", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, *flags, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, force: bool = False) -> None:
        git(
            "push", "--quiet", *(["--force"] if force else []), "origin", "HEAD:main", cwd=self.work
        )

    def commit_and_push(self, message: str, *flags: str) -> str:
        sha = self.commit(message, *flags)
        self.push()
        return sha


class SmartHttp:
    """`git http-backend` behind a loopback HTTP server that asks for Basic credentials
    (user anything, password `token`); it records every Authorization it was sent."""

    def __init__(self, project_root: Path, token: str) -> None:
        backend = shutil.which("git-http-backend") or "/usr/lib/git-core/git-http-backend"
        self.authorizations: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                given = self.headers.get("Authorization", "")
                outer.authorizations.append(given)
                password = ""
                if given.startswith("Basic "):
                    password = base64.b64decode(given[6:]).decode().partition(":")[2]
                if password != token:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {
                    "GIT_PROJECT_ROOT": str(project_root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": "tester",
                }
                done = subprocess.run([backend], input=body, env=env, capture_output=True)
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode().split("\r\n"):
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
