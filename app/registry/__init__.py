"""The model registry: policy and reward model versions, promotion rules and lineage to comparisons."""
