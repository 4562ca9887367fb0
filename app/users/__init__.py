"""Admin management of users: list, create annotators/admins, deactivate, revoke sessions."""
