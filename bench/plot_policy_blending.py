"""The command trace of policy_node's controller at chunk switches: naive vs latency-compensated vs
cross-faded (docs/img/policy_blending.png and the numbers in docs/policy_node.md).

Runs the node's own :class:`gr00t_rlhf_ros.control.Controller` (no ROS, no model) on synthetic chunks
with the two properties that make GR00T chunk switches jump: every chunk is a plausible but different
future (a smooth reference command plus a per-chunk offset and drift, seeded), and the model takes
``--latency`` seconds, so a chunk arrives after the moment its observation was taken.

    .venv/bin/python bench/plot_policy_blending.py --out docs/img/policy_blending.png

Cases (replan every 8 of 16 actions at 10 Hz, 50 Hz control, 300 ms model):
- naive: the chunk starts at action 0 when it arrives (no latency compensation), switched at once;
- compensated: indexed by the time since its observation, switched at once;
- compensated + cross-fade over ``blend_steps`` actions (the node's default, 4).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from gr00t_rlhf_ros.control import ControlConfig, Controller


def reference(t: np.ndarray) -> np.ndarray:
    """The smooth command the chunks approximate, [len(t), 2] rad/s: a slalom (left and right in antiphase)."""
    s = 1.5 * np.sin(2 * np.pi * 0.25 * t)
    return np.stack([2.0 + s, 2.0 - s], axis=1)


def simulate(cfg: ControlConfig, latency: float, compensate: bool, duration: float, seed: int,
             offset_std: float = 0.3, drift_std: float = 0.04):
    """-> (times [N], commands [N, 2], switch times): the controller's commands at every control tick."""
    dt_ctrl, dt = 1.0 / cfg.control_rate, cfg.dt
    ctrl = Controller(cfg)
    pending = []                                         # (arrival, obs time, actions)
    busy_until = -1.0
    times, cmds, switches = [], [], []
    for i in range(int(duration / dt_ctrl)):
        now = i * dt_ctrl
        for item in [p for p in pending if p[0] <= now]:
            pending.remove(item)
            arrival, t_obs, actions = item
            ctrl.on_chunk(actions, t_obs if compensate else arrival, now)
            switches.append(now)
        if now >= busy_until and ctrl.replan_due(now):      # the worker takes the latest observation
            j = np.arange(16)
            rng = np.random.default_rng([seed, i])           # the same observation time -> the same chunk
            err = rng.normal(0, offset_std, 2)[None, :] + rng.normal(0, drift_std, 2)[None, :] * j[:, None]
            pending.append((now + latency, now, reference(now + j * dt) + err))
            busy_until = now + latency
        times.append(now)
        cmds.append(ctrl.tick(now, []).wheels)
    return np.array(times), np.array(cmds), switches


def metrics(times, cmds, start: float) -> dict:
    keep = times >= start
    t, c = times[keep], cmds[keep]
    step = np.abs(np.diff(c[:, 0]))
    return {"max_step": float(step.max()), "p99_step": float(np.percentile(step, 99)),
            "rms_error": float(np.sqrt(np.mean((c - reference(t)) ** 2)))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/img/policy_blending.png")
    p.add_argument("--latency", type=float, default=0.3)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--blend-steps", type=int, default=4)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    base = dict(control_rate=50.0, action_rate=10.0, replan_every=8, max_wheel_speed=5.0)
    cases = [("naive: chunk starts at action 0 on arrival, switched at once", ControlConfig(blend_steps=0, **base), False),
             ("latency-compensated, switched at once", ControlConfig(blend_steps=0, **base), True),
             (f"latency-compensated + cross-fade over {args.blend_steps} actions (default)",
              ControlConfig(blend_steps=args.blend_steps, **base), True)]
    results = {}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(cases), 1, figsize=(10, 8), sharex=True)
    for ax, (title, cfg, comp) in zip(axes, cases):
        t, c, sw = simulate(cfg, args.latency, comp, args.duration, args.seed)
        m = results[title] = metrics(t, c, start=1.0)
        tt = np.linspace(0, args.duration, 400)
        ax.plot(tt, reference(tt)[:, 0], color="0.75", lw=3, label="reference (what the chunks approximate)")
        ax.step(t, c[:, 0], where="post", color="C0", lw=1.2, label="left wheel command, 50 Hz")
        for s in sw:
            ax.axvline(s, color="C3", lw=0.6, alpha=0.5)
        ax.set_title(f"{title}\nlargest step {m['max_step']:.2f} rad/s, RMS error {m['rms_error']:.2f} rad/s",
                     fontsize=9)
        ax.set_ylabel("rad/s")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel(f"time, s (red: a chunk arrives; model latency {args.latency * 1e3:.0f} ms, replan every 8 "
                        "of 16 actions at 10 Hz)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
