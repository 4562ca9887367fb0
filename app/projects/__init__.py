"""Projects: create, configure, archive; the settings every other feature reads."""
