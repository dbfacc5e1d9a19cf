"""Fixtures that run the ERP sandbox (accounting_sync/sandbox) for tests."""
