"""The alerts pages (S7.5). Every URL here is listed in tests/routes_alerts.py."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
