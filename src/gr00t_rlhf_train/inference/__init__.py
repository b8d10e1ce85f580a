"""Inference for the robot: the policy (optionally best-of-N) and the reward model, in this process or
on a server over the network (``gr00t-rlhf serve``). No ROS here.

    from gr00t_rlhf_train.inference import open_policy, open_reward, Chunk, InferenceError, InferenceTimeout
    runtime = open_policy("runs/sft/best")            # checkpoint dir, official dir, preset, or tcp://HOST:PORT
    chunk = runtime.act(observation, seed=None)       # Chunk(actions [16, 2] rad/s, scores, chosen, model_s)
    reward = open_reward("runs/reward/best")          # or tcp://HOST:PORT
    r = reward.score(clip)

api.py (errors, ObservationSpec, Chunk, checks; numpy only), runtime.py (local runtimes), best_of_n.py,
wire.py (the message format: JSON header + raw array frames, never pickle), server.py, client.py, cli.py.
Runtimes are not thread-safe: use each from one thread. docs/inference.md has the details.
"""
import importlib

_EXPORTS = {
    "Chunk": ".api", "ObservationSpec": ".api", "InferenceError": ".api", "InferenceTimeout": ".api",
    "open_policy": ".runtime", "open_reward": ".runtime", "LocalPolicy": ".runtime", "LocalReward": ".runtime",
    "RemotePolicy": ".client", "RemoteReward": ".client",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
