"""The whole RLHF loop in simulation, with fixed seeds: demos -> SFT -> simulated feedback -> reward model
-> stage 3 (iterated) -> evaluation on held-out layouts (issue 10 §4).

Per training seed ``s`` (every step seeded by ``s``):

1. ``demos``: ``demos`` expert episodes on layouts ``1000 s + i`` recorded in process (noiseless labels);
2. ``sft``: ``train sft`` on them (the ``preset``);
3. ``feedback/flip<p>``: rollouts of the SFT policy on layouts ``1000 s + 200 + i``, labelled by the
   simulated human flipping a share ``p`` of its judgements (same trajectories at every p);
4. ``rm/flip<p>``: an action-conditioned reward model (``action_horizon`` K: best-of-N can use it) per p,
   and its accuracy against the labeller's noiseless truth on other SFT rollouts (``rm_test``);
5. ``rl/<method>_flip<p>/round<k>``: stage 3 iterated ``rounds`` times: roll out the current policy
   (layouts ``1000 s + 400 + 50 k + i``), the reward model scores the rollouts inside ``train rl``, update;
   anchored to SFT (the demonstrations mixed in, the velocity anchor to the round's start policy);
6. ``eval/<policy>``: every policy on the held-out layouts ``900000 + i`` (no training step sees them).

Every step lives in its own directory of ``out`` with a ``step.json`` holding the hash of everything it
depends on (its settings and its inputs' hashes) and its result: a rerun skips finished steps; a changed
setting redoes that step and every step downstream of it.

No rclpy (the sim and rollouts import without it): the loop also runs on a GPU machine without ROS.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SIZES = ("tiny", "small", "full")
METHODS = ("rwfm", "acfm", "both")
TASKS = ("Find Blue cube", "Find Green sphere", "Find Red cylinder")
EVAL_BASE = 900000        # held-out layout seeds start here
SEED_STRIDE = 1000        # training layout seeds of training seed s: 1000 s + ...
FORMAT = "gr00t_rlhf_experiment_rlhf/1"


class ExperimentError(ValueError):
    """A bad experiment setting (one line naming the option)."""


class StepError(RuntimeError):
    """A step of the loop failed (one line naming the step and why; finished steps stay cached)."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Every setting of ``experiment rlhf`` (``for_size`` gives the three sizes' defaults)."""

    out: str
    size: str = "tiny"
    seeds: tuple[int, ...] = (0,)
    demos: int = 4                       # expert demonstrations per training seed
    noisy_demos: int = 0                 # NoisyExpertDriver demonstrations (imperfect) on top
    dart_demos: int = 0                  # DART demonstrations on top: noisy execution, the expert's command recorded
    expert_search: float = 0.6           # the expert searches like a camera (ExpertConfig.search_half_angle; 0: off)
    feedback_episodes: int = 4           # SFT rollouts labelled by the simulated human, per seed
    rm_test_episodes: int = 2            # SFT rollouts labelled without noise: reward-model accuracy
    flips: tuple[float, ...] = (0.0, 0.1, 0.25)
    rounds: int = 1                      # stage-3 rounds (roll out -> score -> update)
    round_episodes: int = 4              # rollouts of the current policy per round
    eval_episodes: int = 2               # held-out layouts (the issue: 50)
    best_of_n: int = 8
    max_seconds: float = 8.0             # per episode (demos, rollouts, evaluation)
    camera_size: tuple[int, int] = (96, 128)
    cache_size: int = 64
    preset: str = "tiny"
    device: str = "cpu"
    sft_steps: int = 30
    sft_lr: float = 3e-3
    rm_steps: int = 20
    rm_lr: float = 1e-3
    action_horizon: int = 4              # actions the reward model reads
    rl_steps: int = 10
    rl_lr: float = 1e-3
    batch_size: int = 16
    temperature: float = 0.2
    guidance: float = 1.5                # acfm / both sampling
    demo_fraction: float = 0.25          # anchor: demonstrations mixed into stage 3
    anchor_weight: float = 0.1           # anchor: velocity to the round's start policy
    batch_envs: int = 4                  # rollouts stepped in lockstep
    video: bool = True
    jobs: int = 1                        # stage-3 chains run in parallel processes (GPU machines: 5)
    stop_after: str = ""                 # "sft": stop after evaluating SFT (to choose the demo budget)

    def __post_init__(self):
        def bad(name, why):
            return ExperimentError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: {why}")

        if not str(self.out):
            raise ExperimentError("--out: give the experiment's output directory")
        if self.size not in SIZES:
            raise bad("size", f"allowed {SIZES}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < EVAL_BASE // SEED_STRIDE - 1
                for s in self.seeds):
            raise bad("seeds", f"must be distinct integers in 0..{EVAL_BASE // SEED_STRIDE - 2}, e.g. 0,1,2")
        if self.stop_after not in ("", "sft"):
            raise bad("stop_after", "allowed: sft")
        if not (isinstance(self.expert_search, (int, float)) and 0 <= self.expert_search < math.pi):
            raise bad("expert_search", "must be a half angle in [0, pi) rad (0: the expert turns the short way)")
        for name, low in (("demos", 1), ("noisy_demos", 0), ("dart_demos", 0), ("feedback_episodes", 2), ("rm_test_episodes", 1),
                          ("rounds", 1), ("round_episodes", 2), ("eval_episodes", 1), ("best_of_n", 2),
                          ("sft_steps", 1), ("rm_steps", 1), ("rl_steps", 1), ("batch_size", 1),
                          ("action_horizon", 1), ("batch_envs", 1), ("cache_size", 16), ("jobs", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise bad(name, f"must be an integer >= {low}")
        if self.demos + self.noisy_demos + self.dart_demos > 200 or self.feedback_episodes + self.rm_test_episodes > 200 \
                or self.round_episodes > 50:
            raise ExperimentError("--demos/--feedback-episodes/--round-episodes: too many for the layout seed ranges "
                                  "(demos <= 200, feedback + rm test <= 200, per round <= 50)")
        if self.rounds > 12:
            raise bad("rounds", "must be <= 12 (layout seed range of the rounds)")
        if not self.flips or len(set(self.flips)) != len(self.flips) or not all(
                isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 <= p < 0.5 for p in self.flips):
            raise bad("flips", "must be distinct shares of flipped labels in [0, 0.5), e.g. 0,0.1,0.25")
        for name in ("max_seconds", "sft_lr", "rm_lr", "rl_lr", "temperature"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise bad(name, "must be a positive number")
        if not (isinstance(self.guidance, (int, float)) and math.isfinite(self.guidance) and self.guidance >= 0):
            raise bad("guidance", "must be a finite number >= 0")
        if not (0.0 < self.demo_fraction < 1.0):
            raise bad("demo_fraction", "must be in (0, 1)")
        if not (math.isfinite(self.anchor_weight) and self.anchor_weight >= 0):
            raise bad("anchor_weight", "must be a number >= 0")
        if self.device not in ("cpu", "cuda"):
            raise bad("device", "allowed ('cpu', 'cuda')")
        h, w = self.camera_size
        if h % 2 or w % 2 or not (16 <= h <= 480 and 16 <= w <= 640):
            raise bad("camera_size", "must be even (height, width) within 16..480 x 16..640")

    @classmethod
    def for_size(cls, out: str, size: str = "tiny", **overrides) -> "ExperimentConfig":
        """The defaults of ``size`` (tiny: CI; small: ~20 min on a 2-core CPU; full: the issue's experiment)."""
        if size not in SIZES:
            raise ExperimentError(f"--size {size!r}: allowed {SIZES}")
        base = {
            "tiny": {},
            "small": dict(demos=16, noisy_demos=8, feedback_episodes=12, rm_test_episodes=4, rounds=2,
                          round_episodes=8, eval_episodes=12, max_seconds=20.0, sft_steps=500, rm_steps=150,
                          rl_steps=80,
                          batch_size=32, batch_envs=6),
            # what docs/experiments/rlhf_sim.md ran: the small preset from scratch (the 2B preset would start from
            # random weights here too, no checkpoint travels with the experiment), 3 seeds in parallel processes
            "full": dict(seeds=(0, 1, 2), demos=100, noisy_demos=0, feedback_episodes=40, rm_test_episodes=16,
                         rounds=2, round_episodes=24, eval_episodes=50, max_seconds=30.0, sft_steps=3000,
                         sft_lr=1e-3, rm_steps=600, rm_lr=1e-3, rl_steps=400, rl_lr=3e-4, batch_size=64,
                         batch_envs=6, preset="small", device="cuda", cache_size=96, jobs=5),
        }[size]
        return cls(out=str(out), size=size, **(base | {k: v for k, v in overrides.items() if v is not None}))

    def to_dict(self) -> dict:
        return asdict(self)

    def expert_tuning(self) -> dict:
        """ExpertConfig overrides of the experiment's expert (demonstrations and the reference row)."""
        return {"search_half_angle": float(self.expert_search)} if self.expert_search else {}

    def eval_seeds(self) -> list[int]:
        return [EVAL_BASE + i for i in range(self.eval_episodes)]

    def rollout_config(self, hold: float = 0.0, policy_seed=None):
        from gr00t_rlhf_ros.sim.rollout import RolloutConfig

        return RolloutConfig(max_seconds=float(self.max_seconds), camera_size=tuple(self.camera_size),
                             hold_after_success=hold, policy_seed=policy_seed)


def episodes_for(seeds) -> list[tuple[int, str]]:
    """(layout seed, task) pairs: the task cycles with the seed."""
    return [(int(s), TASKS[int(s) % len(TASKS)]) for s in seeds]


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flip_name(p: float) -> str:
    return f"flip{round(100 * p):02d}"


# ---------------------------------------------------------------------------- cached steps

class Steps:
    """Cached steps under ``root``: ``run(name, key, fn)`` -> fn's result dict, or the stored one when the key matches."""

    def __init__(self, root: Path, log):
        self.root, self.log = root, log
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def run(self, name: str, key: dict, fn) -> dict:
        d = self.root / name
        marker = d / "step.json"
        h = _hash(key)
        if marker.is_file():
            try:
                stored = json.loads(marker.read_text())
                if stored.get("key") == h:
                    self.skipped.append(name)
                    return stored["result"] | {"_key": h}
            except (json.JSONDecodeError, KeyError, TypeError):
                pass
            self.log(f"experiment: {name}: settings or inputs changed; redoing it")
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        t0 = time.monotonic()
        try:
            result = fn(d)
        except Exception as e:  # noqa: BLE001 - one line naming the step; its directory is redone next time
            text = " ".join(str(e).split()) or type(e).__name__
            raise StepError(f"step {name} failed: {type(e).__name__}: {text}") from e
        result = dict(result, seconds=round(time.monotonic() - t0, 1))
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": h, "name": name, "result": result}, indent=1, default=str))
        tmp.replace(marker)
        self.ran.append(name)
        self.log(f"experiment: {name}: done in {result['seconds']:.0f} s")
        return result | {"_key": h}


# ---------------------------------------------------------------------------- the pieces

def _record(driver, episodes, cfg: ExperimentConfig, d: Path, labeler=None, hold: float = 0.0, pool=None) -> dict:
    from gr00t_rlhf_ros.sim.rollout import rollout, summarize
    from gr00t_rlhf_train.data.cache import build_cache

    res = rollout(driver, episodes, cfg.rollout_config(hold), batch_size=cfg.batch_envs, record=d / "dataset",
                  labeler=labeler, pool=pool)
    build_cache(d / "dataset", d / "cache", image_size=cfg.cache_size, progress=False)
    agree = [r.label_agreement for r in res if r.label_agreement is not None]
    return {"dataset": str(d / "dataset"), "cache": str(d / "cache"), "summary": summarize(res),
            "label_agreement": sum(agree) / len(agree) if agree else None}


def _train(cfg: ExperimentConfig, d: Path, steps: int, lr: float, seed: int) -> dict:
    return dict(out_dir=str(d), steps=steps, batch_size=cfg.batch_size, lr=lr, warmup_steps=0, eval_every=0,
                save_every=0, log_every=max(1, steps // 5), num_workers=0, seed=seed, cpu=cfg.device == "cpu")


def _sft(cfg: ExperimentConfig, demos: dict, seed: int, d: Path) -> dict:
    from gr00t_rlhf_train.stages.loop import TrainConfig
    from gr00t_rlhf_train.stages.sft import SFTConfig, run_sft

    s = run_sft(SFTConfig(data=[demos["cache"]], train=TrainConfig(**_train(cfg, d, cfg.sft_steps, cfg.sft_lr, seed)),
                          preset=cfg.preset, val_fraction=0.2 if cfg.demos + cfg.noisy_demos >= 5 else 0.0,
                          val_samples=32, cache_size=cfg.cache_size), progress=False)
    return {"checkpoint": str(s.checkpoint), "train_loss": s.train_loss, "val_action_mse": s.val_action_mse}


def _reward(cfg: ExperimentConfig, fb: dict, test: dict, seed: int, d: Path) -> dict:
    from gr00t_rlhf_train.eval.reward import evaluate_reward
    from gr00t_rlhf_train.stages.reward import RewardConfig, train_reward

    r = train_reward(RewardConfig(data=fb["cache"], out_dir=str(d / "run"), val_fraction=0.25, split_seed=seed,
                                  horizon=4, action_horizon=cfg.action_horizon, loss="bce", head="mlp",
                                  head_hidden=128, val_max_samples=400,
                                  train={k: v for k, v in _train(cfg, d, cfg.rm_steps, cfg.rm_lr, seed).items()
                                         if k != "out_dir"}))
    ckpt = str(r.last_checkpoint)
    ev = evaluate_reward(ckpt, test["cache"], out_dir=d / "truth_eval", device=cfg.device, max_samples=2000)
    m = ev["metrics"]
    return {"checkpoint": ckpt, "truth_accuracy": m.get("frame.accuracy"), "truth_auroc": m.get("frame.auroc"),
            "truth_samples": ev["samples"]}


def _rl_round(cfg: ExperimentConfig, policy: str, rm: str, demos: dict, method: str, seed: int, rnd: int,
              d: Path, pool) -> dict:
    from gr00t_rlhf_ros.sim.rollout import PolicyDriver
    from gr00t_rlhf_train.stages.loop import TrainConfig
    from gr00t_rlhf_train.stages.rl import RLConfig, train_rl

    base = SEED_STRIDE * seed + 400 + 50 * rnd
    driver = PolicyDriver(policy, device=cfg.device, cuda_graphs=False)
    try:
        data = _record(driver, episodes_for(range(base, base + cfg.round_episodes)), cfg, d / "rollouts", pool=pool)
    finally:
        driver.close()
    extra = {} if method == "rwfm" else {"guidance": cfg.guidance}
    r = train_rl(RLConfig(policy=policy, reward_model=rm, data=[data["cache"]],
                          train=TrainConfig(**_train(cfg, d / "run", cfg.rl_steps, cfg.rl_lr, seed)), method=method,
                          temperature=cfg.temperature, demos=[demos["cache"]], demo_fraction=cfg.demo_fraction,
                          anchor_weight=cfg.anchor_weight, val_fraction=0.25, val_samples=16,
                          cache_size=cfg.cache_size, **extra), progress=False)
    return {"checkpoint": str(r.checkpoint), "rollouts": data["summary"], "train_loss": r.train_loss,
            "val_reward": r.val_reward, "scores": r.scores}


def _evaluate(cfg: ExperimentConfig, policy: str | None, d: Path, pool, rm: str | None = None,
              keep_trace: bool = False) -> dict:
    """Success, time to goal, collisions of ``policy`` (None: the scripted expert) on the held-out layouts."""
    from gr00t_rlhf_ros.sim.rollout import ExpertDriver, PolicyDriver, rollout, summarize

    if policy is None:
        driver = ExpertDriver(**cfg.expert_tuning())
    elif rm is None:
        driver = PolicyDriver(policy, device=cfg.device, cuda_graphs=False)
    else:
        from gr00t_rlhf_train.inference import open_policy
        driver = PolicyDriver(open_policy(policy, reward_model=rm, num_candidates=cfg.best_of_n, device=cfg.device,
                                          cuda_graphs=False))
        driver._own = True
    try:
        res = rollout(driver, episodes_for(cfg.eval_seeds()), cfg.rollout_config(), batch_size=cfg.batch_envs,
                      pool=pool)
    finally:
        driver.close()
    return {"summary": summarize(res),
            "episodes": [{k: v for k, v in r.to_dict().items() if k != "trace"} for r in res]}


def _rl_chain(cfg: ExperimentConfig, s: int, name: str, method: str, sft: dict, rm: dict, demos: dict, rl_key: dict,
              eval_key: dict, steps: "Steps | None" = None, pool=None) -> tuple[list, list, list]:
    """Stage 3 of one (method, reward model): ``rounds`` rounds, each evaluated -> (rounds, ran, skipped).

    Without ``steps``/``pool`` (a worker process of ``--jobs``) it makes its own, on the same OUT.
    """
    if steps is None:
        from gr00t_rlhf_ros.demo_models import _import_triton_before_mujoco

        _import_triton_before_mujoco()   # before the simulator's import (rollout imports mujoco)
        import torch

        from gr00t_rlhf_ros.sim.rollout import RobotPool

        if cfg.device == "cpu":
            torch.set_num_threads(1)
        with RobotPool() as own:
            own_steps = Steps(Path(cfg.out), lambda line: print(line, file=sys.stderr, flush=True))
            chain = _rl_chain(cfg, s, name, method, sft, rm, demos, rl_key, eval_key, own_steps, own)[0]
            return chain, own_steps.ran, own_steps.skipped
    policy, up, chain = sft["checkpoint"], [sft["_key"], rm["_key"], demos["_key"]], []
    for k in range(cfg.rounds):
        res = steps.run(f"seed{s}/rl/{name}/round{k + 1}", rl_key | {"up": up, "method": method, "round": k},
                        lambda d: _rl_round(cfg, policy, rm["checkpoint"], demos, method, s, k, d, pool))
        res["eval"] = steps.run(f"seed{s}/eval/{name}_round{k + 1}", eval_key | {"up": res["_key"]},
                                lambda d: _evaluate(cfg, res["checkpoint"], d, pool))
        chain.append(res)
        policy, up = res["checkpoint"], res["_key"]
    return chain, steps.ran, steps.skipped


# ---------------------------------------------------------------------------- the loop

POLICIES = ("expert", "sft", "sft_bon", "rwfm", "acfm", "both", "best")
LABELS = {"expert": "scripted expert (upper reference)", "sft": "SFT only", "sft_bon": "SFT + best-of-N (N = {n})",
          "rwfm": "SFT + reward-weighted FM", "acfm": "SFT + advantage-conditioned FM",
          "best": "best combination (rwfm + acfm + best-of-N)", "both": "SFT + rwfm + acfm (both)"}


def run_experiment(cfg: ExperimentConfig, log=None) -> dict:
    """Run (or finish) the experiment in ``cfg.out``; -> the results (also ``out/results.json``)."""
    from gr00t_rlhf_ros.demo_models import _import_triton_before_mujoco

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    _import_triton_before_mujoco()
    import torch

    threads = torch.get_num_threads()
    if cfg.device == "cpu":
        torch.set_num_threads(1)   # tiny ops: one thread is faster on a busy small CPU (docs/drive.md)
    try:
        return _run(cfg, log)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: ExperimentConfig, log) -> dict:
    from gr00t_rlhf_ros.sim.labeler import LabelerConfig
    from gr00t_rlhf_ros.sim.drivers import NoisyExpertDriver
    from gr00t_rlhf_ros.sim.rollout import ExpertDriver, PolicyDriver, RobotPool

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps(out, log)
    t0 = time.monotonic()
    common = {"format": FORMAT, "camera": list(cfg.camera_size), "cache": cfg.cache_size, "max_s": cfg.max_seconds,
              "envs": cfg.batch_envs, "device": cfg.device}
    eval_key = common | {"eval": cfg.eval_episodes}
    results: dict = {"config": cfg.to_dict(), "seeds": {}}
    with RobotPool() as pool:
        results["expert"] = steps.run("eval_expert", eval_key | ({"search": cfg.expert_search} if cfg.expert_search
                                                                 else {}),
                                      lambda d: _evaluate(cfg, None, d, pool))
        for s in cfg.seeds:
            log(f"experiment: training seed {s}")
            p = f"seed{s}"
            r: dict = {}
            demo_seeds = range(SEED_STRIDE * s, SEED_STRIDE * s + cfg.demos)
            first = SEED_STRIDE * s + cfg.demos
            noisy_seeds = range(first, first + cfg.noisy_demos)
            dart_seeds = range(first + cfg.noisy_demos, first + cfg.noisy_demos + cfg.dart_demos)
            tune = cfg.expert_tuning()

            def demos_fn(d):
                from gr00t_rlhf_ros.sim.rollout import rollout
                out_d = _record(ExpertDriver(**tune), episodes_for(demo_seeds), cfg, d, labeler=LabelerConfig(seed=s),
                                hold=1.5, pool=pool)
                extra = [(NoisyExpertDriver(seed=s, **tune), noisy_seeds),
                         (NoisyExpertDriver(seed=s, std=1.5, hold=0.5, dart=True, **tune), dart_seeds)]
                for driver, seeds in extra:   # appended to the same dataset, then the cache is rebuilt
                    if len(seeds):
                        rollout(driver, episodes_for(seeds), cfg.rollout_config(1.5), batch_size=cfg.batch_envs,
                                record=d / "dataset", labeler=LabelerConfig(seed=s), pool=pool)
                if cfg.noisy_demos or cfg.dart_demos:
                    shutil.rmtree(d / "cache")
                    from gr00t_rlhf_train.data.cache import build_cache
                    build_cache(d / "dataset", d / "cache", image_size=cfg.cache_size, progress=False)
                return out_d
            demo_key = {"demos": cfg.demos, "noisy": cfg.noisy_demos, "seed": s}
            if cfg.dart_demos or cfg.expert_search:   # keys of runs made before these options stay valid
                demo_key |= {"dart": cfg.dart_demos, "search": cfg.expert_search}
            r["demos"] = steps.run(f"{p}/demos", common | demo_key, demos_fn)
            r["sft"] = steps.run(f"{p}/sft", {"up": r["demos"]["_key"], "preset": cfg.preset, "steps": cfg.sft_steps,
                                              "lr": cfg.sft_lr, "bs": cfg.batch_size},
                                 lambda d: _sft(cfg, r["demos"], s, d))
            sft = r["sft"]["checkpoint"]
            # evaluated first: the SFT row is what the demo budget is chosen by
            r["eval"] = {"sft": steps.run(f"{p}/eval/sft", eval_key | {"up": r["sft"]["_key"]},
                                          lambda d: _evaluate(cfg, sft, d, pool))}
            if cfg.stop_after == "sft":
                results["seeds"][s] = r
                continue

            def sft_rollouts(d, first, n, flip):
                driver = PolicyDriver(sft, device=cfg.device, cuda_graphs=False)
                try:
                    return _record(driver, episodes_for(range(first, first + n)), cfg, d,
                                   labeler=LabelerConfig(flip_prob=float(flip), seed=s), pool=pool)
                finally:
                    driver.close()
            r["rm_test"] = steps.run(f"{p}/rm_test", {"up": r["sft"]["_key"], "n": cfg.rm_test_episodes},
                                     lambda d: sft_rollouts(d, SEED_STRIDE * s + 300, cfg.rm_test_episodes, 0.0))
            r["feedback"], r["rm"] = {}, {}
            for flip in cfg.flips:
                f = flip_name(flip)
                r["feedback"][f] = steps.run(f"{p}/feedback/{f}", {"up": r["sft"]["_key"], "n": cfg.feedback_episodes,
                                                                   "flip": flip},
                                             lambda d: sft_rollouts(d, SEED_STRIDE * s + 200, cfg.feedback_episodes, flip))
                r["rm"][f] = steps.run(f"{p}/rm/{f}", {"up": [r["feedback"][f]["_key"], r["rm_test"]["_key"]],
                                                       "steps": cfg.rm_steps, "lr": cfg.rm_lr, "K": cfg.action_horizon},
                                       lambda d: _reward(cfg, r["feedback"][f], r["rm_test"], s, d))
            # stage 3: every method at the first flip level; the combined method at every other level
            f0 = flip_name(cfg.flips[0])
            runs = [(m, f0) for m in METHODS] + [("both", flip_name(x)) for x in cfg.flips[1:]]
            rl_key = {"steps": cfg.rl_steps, "lr": cfg.rl_lr, "T": cfg.temperature, "g": cfg.guidance,
                      "demo": cfg.demo_fraction, "anchor": cfg.anchor_weight, "n": cfg.round_episodes}
            r["rl"] = {}
            rm0 = r["rm"][f0]
            r["eval"]["sft_bon"] = steps.run(f"{p}/eval/sft_bon", eval_key | {"up": [r["sft"]["_key"], rm0["_key"]],
                                                                             "n": cfg.best_of_n},
                                             lambda d: _evaluate(cfg, sft, d, pool, rm=rm0["checkpoint"]))
            chain_args = {f"{method}_{f}": (cfg, s, f"{method}_{f}", method, r["sft"], r["rm"][f], r["demos"],
                                                 rl_key, eval_key)
                          for method, f in runs}
            if cfg.jobs > 1:   # the stage-3 chains are independent: one process each (own robots, own GL)
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                with ProcessPoolExecutor(max_workers=min(cfg.jobs, len(runs)),
                                         mp_context=multiprocessing.get_context("spawn")) as ex:
                    futures = {name: ex.submit(_rl_chain, *a) for name, a in chain_args.items()}
                    done = {name: fut.result() for name, fut in futures.items()}
                for name, (chain, ran, skipped) in done.items():
                    r["rl"][name] = chain
                    steps.ran += ran
                    steps.skipped += skipped
            else:
                for name, a in chain_args.items():
                    r["rl"][name] = _rl_chain(*a, steps=steps, pool=pool)[0]
            for method in METHODS:
                r["eval"][method] = r["rl"][f"{method}_{f0}"][-1]["eval"]
            last_both = r["rl"][f"both_{f0}"][-1]
            r["eval"]["best"] = steps.run(f"{p}/eval/best", eval_key | {"up": [last_both["_key"], rm0["_key"]],
                                                                        "n": cfg.best_of_n},
                                          lambda d: _evaluate(cfg, last_both["checkpoint"], d, pool,
                                                              rm=rm0["checkpoint"]))
            results["seeds"][s] = r
        if cfg.video and not cfg.stop_after:
            from .report import side_by_side_video
            s = cfg.seeds[0]
            r = results["seeds"][s]
            results["video"] = steps.run("video", eval_key | {"up": [r["sft"]["_key"],
                                                                     r["rl"][f"both_{f0}"][-1]["_key"]]},
                                         lambda d: side_by_side_video(cfg, r["sft"]["checkpoint"],
                                                                      r["rl"][f"both_{f0}"][-1]["checkpoint"], d, pool))
    results["steps_ran"], results["steps_skipped"] = steps.ran, steps.skipped
    results["seconds"] = round(time.monotonic() - t0, 1)
    _strip(results)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return results


def _strip(obj) -> None:
    """Drop the internal ``_key`` entries before writing."""
    if isinstance(obj, dict):
        obj.pop("_key", None)
        for v in obj.values():
            _strip(v)
    elif isinstance(obj, list):
        for v in obj:
            _strip(v)
