from django.urls import path

from audit import views

# Every URL here is in tests/test_access_matrix.py too.
urlpatterns = [
    path("audit/", views.audit_log, name="global_audit_log"),
    path("audit/export.<str:fmt>", views.audit_export, name="global_audit_export"),
    path("orgs/<slug:slug>/audit/", views.audit_log, name="audit_log"),
    path("orgs/<slug:slug>/audit/<int:pk>/", views.audit_entry, name="audit_entry"),
    path("orgs/<slug:slug>/audit/export.<str:fmt>", views.audit_export, name="audit_export"),
]
