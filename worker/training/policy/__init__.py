"""Policy training: PPO (default), RLOO, DPO and SFT behind one `train_policy` entry point."""

from worker.training.groups import RankingGroup
from worker.training.policy.algorithm import PolicyAlgorithm
from worker.training.policy.config import PolicyTrainConfig
from worker.training.policy.evaluation import evaluate_policy
from worker.training.policy.rewards import RewardFn
from worker.training.policy.run import Demonstration, PolicyRun
from worker.training.policy.train import PolicyTrainResult, train_policy

__all__ = [
    "Demonstration",
    "PolicyAlgorithm",
    "PolicyRun",
    "PolicyTrainConfig",
    "PolicyTrainResult",
    "RankingGroup",
    "RewardFn",
    "evaluate_policy",
    "train_policy",
]
