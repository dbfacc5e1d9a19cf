from django.urls import path

from accounts import views

# Every URL here is in the access matrix too (tests/routes_accounts.py).
urlpatterns = [
    path("accounts/two-factor/", views.two_factor_page, name="two_factor"),
    path("accounts/two-factor/verify/", views.two_factor_verify, name="two_factor_verify"),
    path(
        "accounts/two-factor/recovery-codes/",
        views.recovery_codes,
        name="two_factor_recovery_codes",
    ),
    path("accounts/two-factor/disable/", views.two_factor_disable, name="two_factor_disable"),
    path("security/lockouts/", views.lockouts, name="lockouts"),
    path("security/lockouts/unlock/", views.lockout_unlock, name="lockout_unlock"),
]
