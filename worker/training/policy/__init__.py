"""Policy training: PPO (default), RLOO, DPO and SFT behind one `train_policy` entry point."""

from worker.training.groups import RankingGroup
from worker.training.policy.config import PolicyTrainConfig
from worker.training.policy.runtime import RewardFn
from worker.training.policy.sft import Demonstration
from worker.training.policy.train import PolicyTrainResult, evaluate_policy, train_policy

__all__ = [
    "Demonstration",
    "PolicyTrainConfig",
    "PolicyTrainResult",
    "RankingGroup",
    "RewardFn",
    "evaluate_policy",
    "train_policy",
]
