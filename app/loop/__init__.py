"""The RLHF loop's one home: which prompts a round samples, which policies write a task's candidates,
the frozen reference, rollout lineage, and what follows each job kind's success (see docs/worker.md)."""
