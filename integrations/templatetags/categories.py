"""Category slugs as pages show them: `{{ record.category|category_label:category_labels }}`.

The view reads the organization's names once (`CategoryLabels.of`) and passes them in;
without them (missing or `None`) the slug is shown, as before names existed.
"""

from __future__ import annotations

from django import template

from integrations.models import CategoryLabels

register = template.Library()


@register.filter
def category_label(category: str, labels: CategoryLabels | None) -> str:
    return labels[category] if isinstance(labels, CategoryLabels) else category


@register.filter
def category_with_slug(category: str, labels: CategoryLabels | None) -> str:
    return labels.with_slug(category) if isinstance(labels, CategoryLabels) else category
