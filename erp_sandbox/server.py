"""The HTTPS server: TLS with a local CA, routing, latency, counting, dropping connections."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import certifi
import trustme

from . import business_central, control, xledger
from .state import SandboxState
from .web import Request, Response, json_response

BC_DISCOVERY = re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration$")
BC_TOKEN = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$")
BC_API = re.compile(r"^/v2\.0/(?P<tenant>[^/]+)/(?P<env>[^/]+)/api/v2\.0/(?P<rest>.+)$")


# --- TLS ---------------------------------------------------------------------------------------


def prepare_tls(state_dir: Path) -> ssl.SSLContext:
    """Create or reuse the local CA, issue the server certificate, write ca-bundle.pem."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca_path, key_path = state_dir / "ca.pem", state_dir / "ca-key.pem"
    if ca_path.exists() and key_path.exists():
        # Reusing the CA keeps bundles already handed to clients (and to the Django
        # settings of a running demo) valid across restarts.
        ca = trustme.CA.from_pem(
            cert_bytes=ca_path.read_bytes(), private_key_bytes=key_path.read_bytes()
        )
    else:
        ca = trustme.CA(organization_name="ERP sandbox", organization_unit_name="local test CA")
        ca.private_key_pem.write_to_path(str(key_path))
        os.chmod(key_path, 0o600)
        ca.cert_pem.write_to_path(str(ca_path))
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    # One bundle that verifies the sandbox and the real services alike, so a client
    # never needs a special case for the sandbox.
    bundle = Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n" + ca.cert_pem.bytes()
    temporary = state_dir / f"ca-bundle.pem.{os.getpid()}.tmp"
    temporary.write_bytes(bundle)
    os.replace(temporary, state_dir / "ca-bundle.pem")  # readers never see half a file
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    return context


# --- routing -----------------------------------------------------------------------------------


class SandboxApp:
    def __init__(self, state: SandboxState, verbose: bool = False) -> None:
        self.state = state
        self.verbose = verbose

    def handle(self, request: Request) -> Response:
        response = self._handle(request)
        if request.method != "GET":  # only a POST, PATCH or DELETE can change the ledger
            self.state.save_ledger()
        return response

    def _handle(self, request: Request) -> Response:
        path = request.path
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            return control.handle(self.state, request)
        erp, handler = self._route(request)
        if handler is None:
            return json_response(404, {"error": f"no such endpoint: {request.method} {path}"})
        # Counted in flight from here (a test can wait for none); held here if a test
        # asked for it, before the latency and before anything is carried out.
        self.state.gate.enter(path, request.body)
        try:
            with self.state.lock:
                delay = self.state.injector.latency_seconds(erp)
            if delay:
                time.sleep(delay)  # outside the lock: slow answers must not serialize others
            try:
                response = handler()
            except Exception:
                # A bug in the sandbox must not look like a fault it injects on purpose.
                traceback.print_exc(file=sys.stderr)
                response = json_response(
                    500, {"error": "sandbox internal error (see its stderr)"}, outcome="error"
                )
        finally:
            self.state.gate.leave()
        if response.outcome is not None:
            self.state.count(erp, "dropped" if response.drop else response.outcome)
        return response

    def _route(self, request: Request) -> tuple[str, Any]:
        state, path, method = self.state, request.path, request.method
        if path == "/graphql":
            if method != "POST":
                return "xledger", lambda: json_response(405, {"error": "use POST"})
            return "xledger", lambda: xledger.graphql_endpoint(state, request, self.verbose)
        if path == "/xledger/oauth2/token" and method == "POST":
            return "xledger", lambda: xledger.token_endpoint(state, request)
        if (match := BC_DISCOVERY.match(path)) and method == "GET":
            return "business_central", lambda: business_central.discovery(
                state, request, match["tenant"]
            )
        if (match := BC_TOKEN.match(path)) and method == "POST":
            return "business_central", lambda: business_central.token_endpoint(
                state, request, match["tenant"]
            )
        if match := BC_API.match(path):
            return "business_central", lambda: business_central.api(
                state, request, match["tenant"], match["env"], match["rest"]
            )
        return "", None


# --- HTTP --------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a pooled requests.Session reuses connections
    server_version = "ERPSandbox/1.0"
    timeout = 120  # an idle keep-alive connection gives its thread back after this
    # Headers and body go out in separate writes; with Nagle on, the second waits for
    # the client's delayed ACK (~40 ms per request on keep-alive connections).
    disable_nagle_algorithm = True
    server: SandboxServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.app.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # requests sends generator bodies chunked; leaving the chunks unread would
            # corrupt the next request on this keep-alive connection.
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self.send_error(400, "Malformed Content-Length or chunked body")
            return
        host = self.headers.get("Host") or f"localhost:{self.server.server_address[1]}"
        request = Request.build(
            self.command, self.path, dict(self.headers), body, f"https://{host}"
        )
        response = self.server.app.handle(request)
        if response.drop:
            # The write is committed; the client gets no answer at all, exactly what a
            # connection lost after the ERP committed looks like from the outside.
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], app: SandboxApp, tls: ssl.SSLContext) -> None:
        super().__init__(address, Handler)
        self.app = app
        self.tls = tls

    def finish_request(self: Self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, not in the
        # accept loop, so one slow or broken client cannot stall everybody else.
        request.settimeout(30)
        try:
            connection = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        connection.settimeout(None)
        try:
            self.RequestHandlerClass(connection, client_address, self)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass  # the client went away; nothing to answer
        finally:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.app.verbose:
            super().handle_error(request, client_address)
