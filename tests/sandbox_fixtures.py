"""Fixtures that run the ERP sandbox (erp_sandbox) for tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


@pytest.fixture
def trust_erp_sandbox(erp_sandbox: SandboxProcess, settings: Any) -> SandboxProcess:
    """The connectors trust the sandbox's CA and start without a cached token or MSAL app
    (a token from an earlier test would be one the reset sandbox no longer knows).

    Modules that sync against the sandbox in every test use it with
    `pytestmark = pytest.mark.usefixtures("trust_erp_sandbox")`."""
    from integrations.clients import business_central as bc
    from integrations.clients import xledger as xl

    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    xl._tokens.clear()
    bc._apps.clear()
    return erp_sandbox
