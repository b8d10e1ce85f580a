"""The demo models of ``make drive``: a tiny policy and a tiny reward model made on this machine.

No weights can be downloaded, so the first ``gr00t-rlhf drive --sim`` makes its own models with the
project's own code, in a few minutes on a laptop CPU, and caches them:

1. **Demonstrations** with the shared in-process rollouts (:func:`gr00t_rlhf_ros.sim.rollout.rollout`,
   no DDS): sim_node's robot and rates, expert_node's scripted expert, recorded through the recorder's
   own code into a dataset of the recorded format. Expert episodes, the expert with noisy commands
   (:class:`~gr00t_rlhf_ros.sim.drivers.NoisyExpertDriver`), and deliberately bad ones (the expert
   heading for the wrong object, the expert with bursts of random wheel speeds: ``WrongGoalDriver``,
   ``PerturbedDriver``) so the reward model sees both labels.
2. **Labels** by the shared simulated human (:mod:`gr00t_rlhf_ros.sim.labeler`, binary, no noise):
   "Doing good" (key 1) at the goal or with at least ``progress_m`` of progress over the last second
   and no collision in it; otherwise "Doing bad" (key 0); the vocabulary's default key for the
   first half second. The truth per frame is in the dataset's ``meta/sim_labels.jsonl``.
3. **Training** with ``gr00t_rlhf_train.stages`` on the ``tiny`` preset: ``train sft`` on the
   expert and noisy-expert episodes (the others are its holdout), ``train reward`` on all of them.
4. **A check drive** (:func:`evaluate_policy`): the shared rollouts with ``PolicyDriver``, which
   executes chunks through policy_node's own controller, summarised by ``sim.rollout.summarize``.

The cache lives in ``$GR00T_RLHF_DEMO_MODELS`` or ``${XDG_CACHE_HOME:-~/.cache}/gr00t-rlhf/demo-models``,
one directory per recipe (``<key>`` = a hash of :class:`DemoRecipe`), holding ``policy/``,
``reward/``, ``dataset/`` and ``report.json``. It is built in ``<key>.building-<pid>`` and renamed
when complete, so an interrupted build never looks finished; ``rebuild=True`` makes it anew.

Imports torch only inside :func:`build` (the CLI imports this module to resolve paths).
No rclpy.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path


FORMAT = "gr00t_rlhf_demo_models/3"   # 2: recorded with sim.rollout, labeled by sim.labeler; 3: DART noisy experts
ENV_DIR = "GR00T_RLHF_DEMO_MODELS"
GOOD, BAD = 1, 0           # keys of the binary feedback vocabulary (the recorder's default)
KINDS = ("expert", "noisy_expert", "wrong_goal", "perturbed")
POLICY_KINDS = ("expert", "noisy_expert")   # what the policy imitates (the others are for the reward model)


class DemoModelError(RuntimeError):
    """The demo models cannot be made or found (one line saying why and what to do)."""


@dataclass(frozen=True)
class DemoRecipe:
    """Everything that decides the demo models (its hash names the cache directory)."""

    tasks: tuple[str, ...] = ("Find Blue cube", "Find Green sphere", "Find Red cylinder")
    expert_episodes: int = 16        # layout seeds 0.. ; tasks cycle (seed 0 gets the sim's default task)
    noisy_expert_episodes: int = 16  # the expert's layouts again, with noisy commands (recorded as executed)
    noise: float = 1.5               # rad/s, std of the Gaussian noise on each wheel command (NoisyExpertDriver)
    wrong_goal_episodes: int = 6     # the expert drives to another goal object
    perturbed_episodes: int = 6      # the expert with bursts of random wheel speeds
    max_seconds: float = 30.0        # per episode
    hold_seconds: float = 1.5        # recorded standing at the goal after success (the policy learns to stop)
    control_rate: float = 20.0       # expert commands per second (expert_node's default)
    image_size: tuple[int, int] = (96, 128)   # (height, width) rendered; same 4:3 as the 320x240 camera
    progress_m: float = 0.05         # label "good": this much closer to the goal over the last second
    cache_size: int = 64             # frame cache side, pixels (the tiny preset's vision input is 56)
    policy_steps: int = 600
    reward_steps: int = 200
    batch_size: int = 32
    lr: float = 3e-3                 # the policy's peak rate (measured: 3e-3 x batch 32 reached a validation action
                                     # MSE of 1.5 where 1e-3 x batch 16 stayed at 10, worse than the mean action)
    reward_lr: float = 1e-3
    reward_horizon: int = 4          # frames per scored clip
    reward_action_horizon: int = 4   # actions the reward model reads (best-of-N); 0: none
    eval_seeds: tuple[int, ...] = (0, 100, 101, 102)   # layouts the finished policy is driven on (0: the sim's default)
    eval_seconds: float = 30.0
    seed: int = 0

    def __post_init__(self):
        if not self.tasks or not all(isinstance(t, str) and t.strip() for t in self.tasks):
            raise ValueError(f"DemoRecipe.tasks: {self.tasks!r} must be non-empty instructions")
        for name in ("expert_episodes", "policy_steps", "reward_steps", "batch_size", "reward_horizon", "cache_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"DemoRecipe.{name}: {v!r} must be an integer >= 1")
        for name in ("noisy_expert_episodes", "wrong_goal_episodes", "perturbed_episodes", "reward_action_horizon",
                     "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"DemoRecipe.{name}: {v!r} must be an integer >= 0")
        if self.wrong_goal_episodes + self.perturbed_episodes < 1:
            raise ValueError("DemoRecipe: at least one imperfect episode (wrong_goal or perturbed) is needed so "
                             "the reward model sees 'Doing bad' frames")
        for name in ("max_seconds", "control_rate", "progress_m", "lr", "reward_lr", "eval_seconds"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"DemoRecipe.{name}: {v!r} must be a positive number")
        if isinstance(self.noise, bool) or not (isinstance(self.noise, (int, float)) and math.isfinite(self.noise)
                                                and self.noise >= 0):
            raise ValueError(f"DemoRecipe.noise: {self.noise!r} must be a number >= 0")
        if not self.hold_seconds >= 0:
            raise ValueError(f"DemoRecipe.hold_seconds: {self.hold_seconds!r} must be >= 0")
        h, w = self.image_size
        if h % 2 or w % 2 or not (16 <= h <= 960 and 16 <= w <= 1280):
            raise ValueError(f"DemoRecipe.image_size: {self.image_size!r} must be even (height, width) within the "
                             "simulated camera's limits")

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """12 hex digits of the recipe's hash (with the cache format)."""
        text = json.dumps({"format": FORMAT, "recipe": self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class DemoModels:
    """A finished cache entry."""

    root: Path

    @property
    def policy(self) -> Path:
        return self.root / "policy"

    @property
    def reward(self) -> Path:
        return self.root / "reward"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    def report(self) -> dict:
        return json.loads((self.root / "report.json").read_text())


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """Where demo models are cached: ``override``, ``$GR00T_RLHF_DEMO_MODELS`` or the XDG cache dir."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "gr00t-rlhf" / "demo-models"


def find(recipe: DemoRecipe | None = None, root: str | os.PathLike | None = None) -> DemoModels | None:
    """The finished demo models of ``recipe`` under ``root``, or None."""
    recipe = recipe or DemoRecipe()
    d = cache_root(root) / recipe.key()
    if (d / "report.json").is_file() and (d / "policy").is_dir() and (d / "reward").is_dir():
        return DemoModels(d)
    return None


def ensure(recipe: DemoRecipe | None = None, root: str | os.PathLike | None = None, rebuild: bool = False,
           log=None) -> DemoModels:
    """The demo models of ``recipe``: from the cache, or built now (minutes; progress to ``log``)."""
    recipe = recipe or DemoRecipe()
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    found = None if rebuild else find(recipe, root)
    if found is not None:
        return found
    base = cache_root(root)
    final = base / recipe.key()
    log(f"demo models: none cached for this recipe; making a tiny policy and reward model in {final} "
        "(first run only, a few minutes on a CPU)")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DemoModelError(f"demo models: cannot create the cache directory {base} ({e.strerror or e}); set "
                             f"${ENV_DIR} or --demo-models DIR to a writable directory") from None
    _remove_abandoned_builds(base)
    work = base / f"{recipe.key()}.building-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    try:
        build(recipe, work, log=log)
        if final.exists():
            shutil.rmtree(final)
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return DemoModels(final)


def _remove_abandoned_builds(base: Path) -> None:
    """Delete ``*.building-<pid>`` directories whose process is gone (a build killed mid-way)."""
    for d in base.glob("*.building-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:  # another user's live process
            pass


# ---------------------------------------------------------------------------- demonstrations

@dataclass
class Episode:
    """What one simulated drive produced (the frames went to the dataset)."""

    index: int
    kind: str
    seed: int
    task: str
    frames: int
    good: int
    success: bool
    seconds: float
    collisions: int


def _episode_plan(recipe: DemoRecipe) -> list[tuple[str, int, str]]:
    """(kind, layout seed, task) of every episode, expert ones first."""
    tasks = recipe.tasks
    plan = [("expert", s, tasks[s % len(tasks)]) for s in range(recipe.expert_episodes)]
    plan += [("noisy_expert", s % recipe.expert_episodes, tasks[(s % recipe.expert_episodes) % len(tasks)])
             for s in range(recipe.noisy_expert_episodes)]
    n = recipe.expert_episodes
    plan += [("wrong_goal", n + i, tasks[i % len(tasks)]) for i in range(recipe.wrong_goal_episodes)]
    n += recipe.wrong_goal_episodes
    plan += [("perturbed", n + i, tasks[i % len(tasks)]) for i in range(recipe.perturbed_episodes)]
    return plan


def driver_for(kind: str, recipe: DemoRecipe):
    """The shared rollout driver of an episode kind (seeded with the recipe's seed)."""
    from gr00t_rlhf_ros.sim.drivers import NoisyExpertDriver, PerturbedDriver, WrongGoalDriver
    from gr00t_rlhf_ros.sim.rollout import ExpertDriver

    if kind == "expert":
        return ExpertDriver()
    if kind == "noisy_expert":
        return NoisyExpertDriver(seed=recipe.seed, std=recipe.noise, hold=0.5, dart=True)   # DART, noise held 0.5 s
    if kind == "wrong_goal":
        return WrongGoalDriver(seed=recipe.seed)
    if kind == "perturbed":
        return PerturbedDriver(seed=recipe.seed)
    raise ValueError(f"demo models: episode kind {kind!r}: allowed {', '.join(KINDS)}")


def rollout_config(recipe: DemoRecipe):
    """The recording drives: sim_node's rates, the recipe's camera size, timeout and hold at the goal."""
    from gr00t_rlhf_ros.sim.rollout import RolloutConfig

    return RolloutConfig(max_seconds=recipe.max_seconds, hold_after_success=recipe.hold_seconds,
                         camera_size=tuple(recipe.image_size), expert_rate=recipe.control_rate)


def labeler_config(recipe: DemoRecipe):
    """The simulated human that labels the demonstrations: binary keys, no noise, the recipe's progress rule."""
    from gr00t_rlhf_ros.sim.labeler import LabelerConfig

    return LabelerConfig(vocabulary="binary", window=1.0, progress_m=recipe.progress_m, seed=recipe.seed)


def record_demonstrations(root: Path, recipe: DemoRecipe, log) -> list[Episode]:
    """Record every episode of the recipe into a new dataset at ``root`` with the shared rollout code
    (``sim.rollout.rollout``: sim_node's robot and rates, the recorder's writer, the simulated human's labels),
    one ``rollout`` call per kind of driver, in the plan's order."""
    from gr00t_rlhf_ros.sim.rollout import RobotPool, read_sim_labels, rollout

    if (Path(root) / "meta" / "info.json").exists():
        raise DemoModelError(f"demo models: {root} holds a dataset already; demonstrations go to a new directory")
    plan = _episode_plan(recipe)
    cfg, labeler = rollout_config(recipe), labeler_config(recipe)
    episodes: list[Episode] = []
    with RobotPool() as pool:
        i = 0
        while i < len(plan):
            kind = plan[i][0]
            j = i
            while j < len(plan) and plan[j][0] == kind:
                j += 1
            part = [(seed, task) for _, seed, task in plan[i:j]]
            results = rollout(driver_for(kind, recipe), part, cfg, record=root, labeler=labeler, pool=pool)
            labels = read_sim_labels(root)
            for (seed, task), r in zip(part, results):
                if r.episode_index is None:
                    raise DemoModelError(f"demo models: the {kind} episode on layout {seed} recorded no frames")
                keys = labels.get(r.episode_index, {}).get("recorded", [])
                e = Episode(r.episode_index, kind, seed, task, r.frames, sum(k == GOOD for k in keys), r.success,
                            round(r.duration, 2), r.collisions)
                episodes.append(e)
                log(f"demo models: episode {len(episodes)}/{len(plan)} {kind:12s} seed {seed:3d} {task!r}: "
                    f"{e.frames} frames, {'reached' if e.success else 'not reached'}, {e.good}/{e.frames} good")
            i = j
    return episodes


# ---------------------------------------------------------------------------- training

def _train_policy(recipe: DemoRecipe, cache: Path, out: Path, holdout: list[int], device_cpu: bool):
    from gr00t_rlhf_train.stages.loop import TrainConfig
    from gr00t_rlhf_train.stages.sft import SFTConfig, run_sft

    train = TrainConfig(out_dir=str(out), steps=recipe.policy_steps, batch_size=recipe.batch_size, lr=recipe.lr,
                        warmup_ratio=0.05, eval_every=0, save_every=0, log_every=max(1, recipe.policy_steps // 10),
                        num_workers=0, seed=recipe.seed, cpu=device_cpu)
    cfg = SFTConfig(data=[str(cache)], train=train, preset="tiny", holdout=holdout, val_fraction=0.1,
                    val_samples=64)
    return run_sft(cfg, progress=False)


def _reward_supports_actions() -> bool:
    from gr00t_rlhf_train.stages.reward import RewardConfig

    return "action_horizon" in RewardConfig.__dataclass_fields__


def _train_reward(recipe: DemoRecipe, cache: Path, out: Path, device_cpu: bool):
    from gr00t_rlhf_train.stages.reward import RewardConfig, train_reward

    extra = {}
    if recipe.reward_action_horizon and _reward_supports_actions():
        extra["action_horizon"] = recipe.reward_action_horizon
    train = dict(steps=recipe.reward_steps, batch_size=recipe.batch_size, lr=recipe.reward_lr, warmup_steps=10,
                 eval_every=max(1, recipe.reward_steps // 2), save_every=0, log_every=max(1, recipe.reward_steps // 10),
                 num_workers=0, seed=recipe.seed, cpu=device_cpu)
    cfg = RewardConfig(data=str(cache), out_dir=str(out), val_fraction=0.15, split_seed=recipe.seed,
                       horizon=recipe.reward_horizon, loss="bce", head="mlp", head_hidden=128,
                       val_max_samples=400, train=train, **extra)
    return train_reward(cfg)


def build(recipe: DemoRecipe, work: Path, log) -> DemoModels:
    """Record the demonstrations and train both models into ``work`` (a new directory)."""
    _import_triton_before_mujoco()
    import torch

    t0 = time.monotonic()
    work.mkdir(parents=True)
    # one thread: the tiny model's ops are too small to gain from more, and on a busy 2-core machine
    # two threads per op ran 3-10x slower than one (measured: 0.13 s vs 0.4-1.4 s per step)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(recipe, work, log, t0)
    finally:
        torch.set_num_threads(threads)


def _build(recipe: DemoRecipe, work: Path, log, t0: float) -> DemoModels:
    from gr00t_rlhf_train.data.cache import build_cache

    episodes = record_demonstrations(work / "dataset", recipe, log)
    t_data = time.monotonic() - t0
    expert = [e for e in episodes if e.kind == "expert"]
    frames = sum(e.frames for e in episodes)
    good = sum(e.good for e in episodes)
    if good in (0, frames):
        raise DemoModelError(f"demo models: the {frames} demonstration frames all got the label "
                             f"{'good' if good else 'bad'}; the reward model needs both (recipe {recipe.to_dict()})")
    log(f"demo models: {len(episodes)} episodes, {frames} frames ({good} good, {frames - good} bad) in {t_data:.0f} s; "
        f"expert reached the goal in {sum(e.success for e in expert)}/{len(expert)}")
    cache = build_cache(work / "dataset", work / "cache", image_size=recipe.cache_size, progress=False)
    cpu = True  # the demo is made where it runs: the CPU keeps it identical on every machine
    log(f"demo models: training the policy (tiny preset, {recipe.policy_steps} steps, expert episodes only)")
    t1 = time.monotonic()
    holdout = [e.index for e in episodes if e.kind not in POLICY_KINDS]
    sft = _train_policy(recipe, cache, work / "sft", holdout, cpu)
    policy_src = Path(sft.best_checkpoint or sft.checkpoint)
    shutil.copytree(policy_src, work / "policy", ignore=shutil.ignore_patterns("optimizer.safetensors", "rng_*",
                                                                                "trainer_state.json"))
    t_policy = time.monotonic() - t1
    log(f"demo models: policy trained in {t_policy:.0f} s (train loss {_fmt(sft.train_loss)}, validation action "
        f"MSE {_fmt(sft.val_action_mse)} rad^2/s^2)")
    log(f"demo models: training the reward model (tiny preset, {recipe.reward_steps} steps, horizon "
        f"{recipe.reward_horizon} frames)")
    t2 = time.monotonic()
    rm = _train_reward(recipe, cache, work / "rm", cpu)
    reward_src = Path(rm.best_checkpoint or rm.last_checkpoint)
    shutil.copytree(reward_src, work / "reward", ignore=shutil.ignore_patterns("optimizer.safetensors", "rng_*",
                                                                                "trainer_state.json"))
    t_reward = time.monotonic() - t2
    ev = rm.train.eval_metrics or {}
    log(f"demo models: reward model trained in {t_reward:.0f} s (validation AUROC {_fmt(ev.get('auroc'))}, "
        f"accuracy {_fmt(ev.get('accuracy'))})")
    for d in ("sft", "rm", "cache"):
        shutil.rmtree(work / d, ignore_errors=True)
    driving = {"success": "0/0", "episodes": []}
    if recipe.eval_seeds:
        log(f"demo models: driving the policy on {len(recipe.eval_seeds)} layouts (in process, "
            f"{recipe.eval_seconds:g} s each at most)")
        driving = evaluate_policy(work / "policy", list(recipe.eval_seeds), recipe.tasks, recipe.eval_seconds, log,
                                  policy_seed=recipe.seed)
    report = {
        "format": FORMAT, "key": recipe.key(), "recipe": recipe.to_dict(),
        "episodes": [asdict(e) for e in episodes],
        "frames": frames, "good_frames": good,
        "expert_success": f"{sum(e.success for e in expert)}/{len(expert)}",
        "policy": {"train_loss": sft.train_loss, "val_loss": sft.val_loss, "val_action_mse": sft.val_action_mse,
                   "steps": sft.steps, "seconds": round(t_policy, 1)},
        "reward": {"validation": {k: v for k, v in ev.items() if isinstance(v, (int, float)) and math.isfinite(v)},
                   "steps": rm.train.steps, "seconds": round(t_reward, 1),
                   "action_horizon": recipe.reward_action_horizon if _reward_supports_actions() else 0},
        "driving": driving,
        "seconds": {"data": round(t_data, 1), "policy": round(t_policy, 1), "reward": round(t_reward, 1),
                    "total": round(time.monotonic() - t0, 1)},
    }
    (work / "report.json").write_text(json.dumps(report, indent=1))
    log(f"demo models: done in {report['seconds']['total']:.0f} s; the policy reached the goal on "
        f"{driving['success']} test layouts")
    return DemoModels(work)


# ---------------------------------------------------------------------------- how well it drives

def evaluate_policy(policy_dir: str | Path, seeds: list[int], tasks: tuple[str, ...], max_seconds: float = 30.0,
                    log=None, policy_seed: int = 0) -> dict:
    """Drive the policy on layouts ``seeds`` (task ``tasks[seed % len(tasks)]``) with the shared rollout code,
    which executes chunks exactly as policy_node does (its observation builder and controller: interpolation,
    cross-fade, replanning at its defaults; no model latency), at sim_node's default camera size.
    -> {"success": "k/n", "summary": sim.rollout.summarize(...), "episodes": [...]}."""
    from gr00t_rlhf_ros.sim.rollout import PolicyDriver, RolloutConfig, rollout, summarize
    from gr00t_rlhf_train.inference import open_policy

    runtime = open_policy(str(policy_dir), device="cpu", cuda_graphs=False)
    driver = PolicyDriver(runtime)
    episodes, results = [], []
    try:
        for s in seeds:
            task = tasks[s % len(tasks)]
            r = rollout(driver, [(s, task)], RolloutConfig(max_seconds=max_seconds, policy_seed=policy_seed))[0]
            results.append(r)
            e = {"seed": s, "task": task, "success": r.success,
                 "seconds": round(r.time_to_goal if r.success else r.duration, 1),
                 "final_distance": round(r.final_distance, 2), "collisions": r.collisions}
            episodes.append(e)
            if log:
                log(f"demo models: policy on layout {s} {task!r}: "
                    f"{'reached in %.1f s' % e['seconds'] if e['success'] else 'not reached (%.2f m to go)' % e['final_distance']}")
    finally:
        driver.close()
        runtime.close()
    return {"success": f"{sum(e['success'] for e in episodes)}/{len(episodes)}", "summary": summarize(results),
            "episodes": episodes}


def _import_triton_before_mujoco() -> None:
    """triton (installed with torch, imported by training) segfaults when imported after Mesa's LLVM,
    which ``import mujoco`` loads for offscreen rendering; imported first, both work in one process."""
    import importlib.util

    if "mujoco" not in sys.modules and importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3g}"
