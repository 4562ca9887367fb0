"""Reward-model training from ranking groups (InstructGPT K-wise loss), evaluation and scoring."""

from worker.training.reward.config import ConfigError, RewardTrainConfig
from worker.training.reward.eval import pairwise_metrics
from worker.training.reward.plan import TrainPlan, make_plan
from worker.training.reward.scorer import RewardScorer, score_texts
from worker.training.reward.train import RewardTrainResult, train_reward_model

__all__ = [
    "ConfigError",
    "RewardScorer",
    "RewardTrainConfig",
    "RewardTrainResult",
    "TrainPlan",
    "make_plan",
    "pairwise_metrics",
    "score_texts",
    "train_reward_model",
]
