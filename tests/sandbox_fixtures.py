"""Fixtures that run the ERP sandbox (erp_sandbox) for tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from erp_sandbox.client import SandboxProcess


@pytest.fixture(scope="session")
def erp_sandbox_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One sandbox process for the whole session: starting it costs a CA and a key."""
    sandbox = SandboxProcess.start(tmp_path_factory.mktemp("erp-sandbox"))
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def erp_sandbox(erp_sandbox_process: SandboxProcess) -> SandboxProcess:
    """The session's sandbox, back at the seed with no faults, tokens or counts."""
    erp_sandbox_process.reset()
    return erp_sandbox_process
