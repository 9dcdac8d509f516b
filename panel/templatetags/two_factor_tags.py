"""`{% two_factor_status user as two_factor %}`: whether the user has two-factor authentication on and how
many recovery codes are left (for the account page's section)."""

from django import template

from panel.accounts import totp

register = template.Library()


@register.simple_tag
def two_factor_status(user) -> totp.Status:
    return totp.status(user)
