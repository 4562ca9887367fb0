"""Project membership: who may see and label a project whose `labeling.access` is "members"."""
