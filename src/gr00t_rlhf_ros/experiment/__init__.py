"""Experiments on the simulated robot: ``gr00t-rlhf experiment rlhf`` (the whole RLHF loop, issue 10 §4)."""
