from django.urls import path

from audit import views

# Every URL here is in the access matrix (tests/test_access_matrix.py,
# tests/routes_audit_trail.py) too.
urlpatterns = [
    path("audit/", views.audit_log, name="global_audit_log"),
    path("audit/export.<str:fmt>", views.audit_export, name="global_audit_export"),
    path("trail/", views.admin_trail, name="global_admin_trail"),
    path("orgs/<slug:slug>/audit/", views.audit_log, name="audit_log"),
    path("orgs/<slug:slug>/audit/<int:pk>/", views.audit_entry, name="audit_entry"),
    path("orgs/<slug:slug>/audit/export.<str:fmt>", views.audit_export, name="audit_export"),
    path("orgs/<slug:slug>/audit/verify/", views.verify_now, name="audit_verify"),
    path("orgs/<slug:slug>/audit/chain/", views.chain_badge, name="audit_chain_badge"),
    path("orgs/<slug:slug>/trail/", views.admin_trail, name="admin_trail"),
]
