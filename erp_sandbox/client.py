"""Start and drive a sandbox process from tests and benchmarks.

sandbox = SandboxProcess.start(tmp_path)
sandbox.set_faults(error_rate=0.2)
...
sandbox.stop()
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"ERP sandbox ready on https://localhost:(\d+)")
START_TIMEOUT_S = 30


class SandboxProcess:
    def __init__(self, process: subprocess.Popen[str], port: int, state_dir: Path) -> None:
        self.process = process
        self.port = port
        self.state_dir = state_dir
        self.url = f"https://localhost:{port}"
        self.ca_bundle = state_dir / "ca-bundle.pem"
        self._session = requests.Session()
        self._session.verify = str(self.ca_bundle)
        # REQUESTS_CA_BUNDLE (set on many machines) would otherwise override `verify`;
        # the control API is local, so proxies from the environment must not apply either.
        self._session.trust_env = False

    @classmethod
    def start(
        cls,
        state_dir: Path,
        port: int = 0,
        page_size: int = 50,
        *,
        verbose: bool = False,
        persist: bool = False,
    ) -> SandboxProcess:
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "erp_sandbox",
            "--port",
            str(port),
            "--state-dir",
            str(state_dir),
            "--page-size",
            str(page_size),
        ]
        if verbose:
            command.append("--verbose")
        if persist:
            command.append("--persist")
        log_path = state_dir / "sandbox.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
            )
        lines: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        # A thread keeps reading stdout for the whole life of the process: a full pipe
        # would otherwise block the sandbox the day it prints more.
        threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                process.kill()
                raise RuntimeError(f"the ERP sandbox did not start in {START_TIMEOUT_S} s")
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:  # stdout closed: the process died
                process.wait(timeout=5)
                log_tail = log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"the ERP sandbox exited with {process.returncode}:\n{log_tail}")
            if match := READY.search(line):
                return cls(process, int(match[1]), state_dir)

    # --- the control API ---------------------------------------------------------------------

    def _control(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, Any] | None = None,
        timeout: float = 30,
    ) -> Any:
        response = self._session.request(
            method, f"{self.url}/_sandbox/{path}", json=body, params=params, timeout=timeout
        )
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._control("POST", "reset")

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Replace all fault settings; omitted ones take their defaults."""
        return self._control("POST", "faults", faults)

    def faults(self) -> dict[str, Any]:
        return self._control("GET", "faults")

    def ledger(self) -> dict[str, Any]:
        return self._control("GET", "ledger")

    def xledger_import(self) -> dict[str, int]:
        """Run Xledger's import job now: {"imported": <lines>, "rejected": <lines>}."""
        return self._control("POST", "xledger/import")

    def requests(self) -> dict[str, Any]:
        return self._control("GET", "requests")

    def burst(self) -> dict[str, Any]:
        """Per ERP under `burst_limit`: the limit and `shortest_span_s` (README, "Control")."""
        return self._control("GET", "burst")

    # --- what the ERPs' users do after a send (issue 15 item 6; README, "Control") ------------

    def bc_delete_line(self, reference: str, **more: Any) -> dict[str, Any]:
        """Finance deletes the unposted journal line(s) with this document number."""
        return self._control(
            "POST", "business_central/delete_line", {"reference": reference, **more}
        )

    def bc_edit_line(self, reference: str, **changes: Any) -> dict[str, Any]:
        """Finance edits a journal line: amount, accountNumber, postingDate, dimension
        ({"code", "valueCode"})."""
        return self._control(
            "POST", "business_central/edit_line", {"reference": reference, **changes}
        )

    def bc_post_journal(self, journal: str = "UTLEGG", **more: Any) -> dict[str, Any]:
        """Finance posts the journal (Microsoft.NAV.post): its lines become G/L entries."""
        return self._control("POST", "business_central/post_journal", {"journal": journal, **more})

    def bc_key_entry(self, kind: str, reference: str, **fields: Any) -> dict[str, Any]:
        """An entry keyed by hand: kind "journal_line" or "ledger_entry"; fields amount,
        accountNumber, postingDate, and optionally balancingAccountNumber, dimension."""
        body = {"kind": kind, "reference": reference, **fields}
        return self._control("POST", "business_central/key_entry", body)

    def xledger_reject(self, reference: str, **more: Any) -> dict[str, Any]:
        """Xledger's import job rejects the voucher waiting under this reference."""
        return self._control("POST", "xledger/reject", {"reference": reference, **more})

    def xledger_key_voucher(self, kind: str, reference: str, **fields: Any) -> dict[str, Any]:
        """A voucher keyed by hand: kind "transaction" or "import_item"; fields amount,
        account, payableAccount, postedDate, and optionally glObjects, trRegNumber."""
        body = {"kind": kind, "reference": reference, **fields}
        return self._control("POST", "xledger/key_voucher", body)

    # --- holding a request (README, "Holding a request") ----------------------------------

    def hold(self, match: str) -> None:
        """API requests whose path or body contains `match` wait until `release()`."""
        self._control("POST", "hold", {"match": match})

    def wait_until_held(self, count: int = 1, timeout: float = 30) -> None:
        """Return once `count` requests are held; the sandbox answers as soon as they are,
        so the test waits exactly as long as the request takes to arrive."""
        status = self._control(
            "GET", "held", params={"at_least": count, "timeout": timeout}, timeout=timeout + 10
        )
        if status["held"] < count:
            raise TimeoutError(f"no {count} request(s) held within {timeout} s: {status}")

    def release(self) -> int:
        """Let the held requests go and hold no more; answers how many were held."""
        return self._control("POST", "release")["released"]

    def wait_until_idle(self, timeout: float = 30) -> None:
        """Return once no API request is being handled (one a client gave up on included)."""
        status = self._control("GET", "idle", params={"timeout": timeout}, timeout=timeout + 10)
        if status["in_flight"]:
            raise TimeoutError(f"the sandbox was still handling requests after {timeout} s")

    def stop(self) -> None:
        self._session.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)
