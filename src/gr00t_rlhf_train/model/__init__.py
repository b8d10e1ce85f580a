"""GR00T N1 in PyTorch on transformers: the policy and the reward model of gr00t_rlhf.

configuration (presets ``gr00t-n1-2b``, ``tiny``) -> backbone (Eagle2) + action_head (flow-matching
DiT) = gr00t_n1.Gr00tN1; processor (observations <-> tensors); policy.Gr00tPolicy (get_action);
reward_head + reward_model.RewardModel (score); checkpoint (official layout and ours).
"""
from .configuration import ModelConfig, preset
from .policy import Gr00tPolicy
from .processor import Gr00tProcessor, ModalityConfig
from .reward_head import RewardHeadConfig
from .reward_model import RewardModel

__all__ = ["Gr00tPolicy", "Gr00tProcessor", "ModalityConfig", "ModelConfig", "RewardHeadConfig", "RewardModel",
           "preset"]
