"""GR00T N1 in PyTorch on transformers: the policy and the reward model of gr00t_rlhf.

configuration (presets ``gr00t-n1-2b``, ``tiny``) -> backbone (Eagle2) + action_head (flow-matching
DiT) = gr00t_n1.Gr00tN1; processor (observations <-> tensors); policy.Gr00tPolicy (get_action);
reward_head + reward_model.RewardModel (score); checkpoint (official layout and ours).
"""
import importlib

# Exports are imported on first use: `import gr00t_rlhf_train.model.cli` (the CLI) or
# `...configuration` must not pay for torch and transformers.
_EXPORTS = {
    "ModelConfig": ".configuration", "preset": ".configuration",
    "Gr00tPolicy": ".policy",
    "Gr00tProcessor": ".processor", "ModalityConfig": ".processor",
    "RewardHeadConfig": ".reward_head",
    "RewardModel": ".reward_model",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
