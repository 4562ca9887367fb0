"""Web plumbing shared by every feature: templating, CSRF, security headers, request limits, error pages."""
