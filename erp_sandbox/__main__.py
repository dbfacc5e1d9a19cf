"""`python -m erp_sandbox`: run the ERP sandbox (see README.md, "Running")."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from .server import SandboxApp, SandboxServer, prepare_tls
from .state import DEFAULT_SEED, SandboxState


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m erp_sandbox",
        description="A local HTTPS stand-in for Xledger and Business Central.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, default=Path("var/sandbox"))
    parser.add_argument("--seed", type=Path, default=DEFAULT_SEED)
    parser.add_argument(
        "--page-size", type=int, default=50, help="Business Central's default page size"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--persist",
        action="store_true",
        help="keep what was posted in <state-dir>/ledger.json across restarts (the demo)",
    )
    args = parser.parse_args(argv)
    if args.page_size < 1:
        parser.error("--page-size must be at least 1")
    return args


def _stop(signum: int, frame: FrameType | None) -> None:
    # serve_forever() runs in the main thread; leaving it through SystemExit closes
    # the listening socket cleanly (honcho and the test fixture send SIGTERM).
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tls = prepare_tls(args.state_dir)  # creates the state dir
    ledger_file = args.state_dir / "ledger.json" if args.persist else None
    state = SandboxState.from_file(args.seed, page_size=args.page_size, ledger_file=ledger_file)
    server = SandboxServer((args.host, args.port), SandboxApp(state, args.verbose), tls)
    signal.signal(signal.SIGTERM, _stop)
    port = server.server_address[1]
    print(f"ERP sandbox ready on https://localhost:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
