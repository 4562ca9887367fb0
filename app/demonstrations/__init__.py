"""Demonstrations: the answers people want for prompts (written beside a ranking or imported), the training
data of the SFT stage of the loop, and which SFT version trained on which (see docs/worker.md)."""
