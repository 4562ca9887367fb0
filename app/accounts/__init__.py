"""Accounts: own password and API tokens, one-time invite and password-reset links handed out by admins."""
