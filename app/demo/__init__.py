"""The demo: an admin, an annotator and a small support-assistant project to try prefloop on."""
