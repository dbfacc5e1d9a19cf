"""Shared helpers with no imports of the project's other apps: the bottom layer."""
