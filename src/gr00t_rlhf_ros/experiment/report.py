"""The experiment's write-up: the table (mean ± 95 % CI over training seeds), plots, the side-by-side video,
the markdown with every number's command."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

# two-sided 95 % Student t quantiles by degrees of freedom (no scipy in the training profile)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        15: 2.131, 20: 2.086, 30: 2.042}


def t95(df: int) -> float:
    keys = [k for k in _T95 if k <= df]
    return _T95[max(keys)] if df <= 30 else 1.96


def mean_ci(values) -> tuple[float | None, float | None]:
    """Mean and the half-width of its 95 % CI (None with one value); None values are left out."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], float)
    if v.size == 0:
        return None, None
    if v.size == 1:
        return float(v[0]), None
    return float(v.mean()), float(t95(v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


def fmt(m, ci, scale: float = 1.0, digits: int = 1) -> str:
    if m is None:
        return "–"
    s = f"{m * scale:.{digits}f}"
    return s if ci is None else f"{s} ± {ci * scale:.{digits}f}"


def table_rows(results: dict) -> list[dict]:
    """One row per policy of the issue's table: mean ± CI over the training seeds."""
    from .rlhf import LABELS, POLICIES

    cfg = results["config"]
    rows = []
    for name in POLICIES:
        if name == "expert":
            per_seed = [results["expert"]["summary"]]
        else:
            per_seed = [r["eval"][name]["summary"] for r in results["seeds"].values()]
        row = {"policy": name, "label": LABELS[name].format(n=cfg["best_of_n"]), "seeds": len(per_seed)}
        for metric in ("success_rate", "mean_time_to_goal", "collisions_per_episode"):
            row[metric], row[metric + "_ci"] = mean_ci([p.get(metric) for p in per_seed])
        rows.append(row)
    return rows


def noise_rows(results: dict) -> list[dict]:
    """Per flip level: reward-model accuracy vs the noiseless truth, the labels' agreement with it, stage-3 gain."""
    from .rlhf import flip_name

    cfg = results["config"]
    rows = []
    f0 = flip_name(cfg["flips"][0])
    for flip in cfg["flips"]:
        f = flip_name(flip)
        acc, auroc, agree, gain, stage3 = [], [], [], [], []
        for r in results["seeds"].values():
            acc.append(r["rm"][f]["truth_accuracy"])
            auroc.append(r["rm"][f]["truth_auroc"])
            agree.append(r["feedback"][f]["label_agreement"])
            both = r["rl"][f"both_{f}"][-1]["eval"]["summary"]["success_rate"] if f != f0 else \
                r["eval"]["both"]["summary"]["success_rate"]
            stage3.append(both)
            gain.append(both - r["eval"]["sft"]["summary"]["success_rate"])
        rows.append({"flip": flip, "label_agreement": mean_ci(agree), "rm_accuracy": mean_ci(acc),
                     "rm_auroc": mean_ci(auroc), "stage3_success": mean_ci(stage3), "gain": mean_ci(gain)})
    return rows


def round_curves(results: dict) -> dict:
    """Success rate vs stage-3 round (0 = SFT) per method at the first flip level: name -> (means, cis)."""
    from .rlhf import METHODS, flip_name

    f0 = flip_name(results["config"]["flips"][0])
    curves = {}
    for m in METHODS:
        per_round = [[r["eval"]["sft"]["summary"]["success_rate"] for r in results["seeds"].values()]]
        n = len(next(iter(results["seeds"].values()))["rl"][f"{m}_{f0}"])
        for k in range(n):
            per_round.append([r["rl"][f"{m}_{f0}"][k]["eval"]["summary"]["success_rate"]
                              for r in results["seeds"].values()])
        curves[m] = [mean_ci(v) for v in per_round]
    return curves


def plots(results: dict, img_dir: Path, prefix: str = "rlhf_") -> dict[str, Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m, pts in round_curves(results).items():
        x = np.arange(len(pts))
        y = np.array([p[0] for p in pts], float) * 100
        e = np.array([p[1] or 0.0 for p in pts], float) * 100
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=m)
    ax.axhline(results["expert"]["summary"]["success_rate"] * 100, color="k", ls="--", lw=1, label="expert")
    ax.set_xticks(range(len(pts)))
    ax.set_xlabel("stage-3 round (0 = SFT)")
    ax.set_ylabel("success rate, held-out layouts (%)")
    ax.set_ylim(-5, 105)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files["rounds"] = img_dir / f"{prefix}success_vs_round.png"
    fig.savefig(files["rounds"], dpi=100)
    plt.close(fig)

    rows = noise_rows(results)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = [100 * r["flip"] for r in rows]
    for key, label in (("rm_accuracy", "reward model vs truth"), ("label_agreement", "labels vs truth")):
        y = [(r[key][0] or 0) * 100 for r in rows]
        e = [(r[key][1] or 0) * 100 for r in rows]
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=label)
    ax.set_xlabel("flipped labels (%)")
    ax.set_ylabel("accuracy against the noiseless truth (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files["noise"] = img_dir / f"{prefix}rm_accuracy_vs_noise.png"
    fig.savefig(files["noise"], dpi=100)
    plt.close(fig)
    return files


# ---------------------------------------------------------------------------- video

def _decode(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _episode_video(dataset: Path) -> Path:
    found = sorted(dataset.glob("videos/**/*.mp4"))
    if not found:
        raise FileNotFoundError(f"{dataset}: no episode video (videos/**/*.mp4)")
    return found[0]


def side_by_side_video(cfg, sft: str, stage3: str, d: Path, pool) -> dict:
    """SFT and stage-3 on the first held-out layout, ego cameras next to each other -> ``d/side_by_side.mp4``."""
    import av

    from gr00t_rlhf_ros.sim.rollout import PolicyDriver, rollout

    from .rlhf import episodes_for

    ep = episodes_for(cfg.eval_seeds()[:1])
    ends = {}
    for name, ckpt in (("sft", sft), ("stage3", stage3)):
        driver = PolicyDriver(ckpt, device=cfg.device, cuda_graphs=False)
        try:
            ends[name] = rollout(driver, ep, cfg.rollout_config(), record=d / name, pool=pool)[0]
        finally:
            driver.close()
    a, b = _decode(_episode_video(d / "sft")), _decode(_episode_video(d / "stage3"))
    n = max(len(a), len(b))
    a += [a[-1]] * (n - len(a))
    b += [b[-1]] * (n - len(b))
    path = d / "side_by_side.mp4"
    h, w = a[0].shape[:2]
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt = 2 * w + 4, h, "yuv420p"
        for fa, fb in zip(a, b):
            frame = np.concatenate([fa, np.full((h, 4, 3), 255, np.uint8), fb], axis=1)
            for pkt in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    for name in ("sft", "stage3"):   # the recorded datasets were only the video's source
        import shutil
        shutil.rmtree(d / name, ignore_errors=True)
    return {"path": str(path), "frames": n, "seed": ep[0][0], "task": ep[0][1],
            "sft": {"success": ends["sft"].success, "time_to_goal": ends["sft"].time_to_goal},
            "stage3": {"success": ends["stage3"].success, "time_to_goal": ends["stage3"].time_to_goal}}


# ---------------------------------------------------------------------------- markdown

def command_line(cfg: dict) -> str:
    """The command that reproduces the run (the size's defaults plus what differs from them)."""
    from .rlhf import ExperimentConfig

    base = ExperimentConfig.for_size(cfg["out"], cfg["size"]).to_dict()
    parts = [f"gr00t-rlhf experiment rlhf --out {cfg['out']} --size {cfg['size']}"]
    flags = {"seeds": "--seeds", "demos": "--demos", "noisy_demos": "--noisy-demos", "rounds": "--rounds",
             "eval_episodes": "--eval-episodes", "flips": "--flips", "device": "--device", "preset": "--preset",
             "feedback_episodes": "--feedback-episodes", "round_episodes": "--round-episodes",
             "max_seconds": "--max-seconds", "dart_demos": "--dart-demos", "expert_search": "--expert-search",
             "rm_test_episodes": "--rm-test-episodes", "best_of_n": "--best-of-n",
             "action_horizon": "--action-horizon", "sft_steps": "--sft-steps", "sft_lr": "--sft-lr",
             "rm_steps": "--rm-steps", "rm_lr": "--rm-lr", "rl_steps": "--rl-steps", "rl_lr": "--rl-lr",
             "batch_size": "--batch-size", "cache_size": "--cache-size", "jobs": "--jobs"}
    for k, flag in flags.items():
        norm = lambda x: list(x) if isinstance(x, (list, tuple)) else x  # noqa: E731
        v = cfg.get(k, base[k])   # results of older runs lack the newer fields
        if norm(v) != norm(base[k]):
            parts.append(f"{flag} {','.join(str(x) for x in v) if isinstance(v, (list, tuple)) else v}")
    return " ".join(parts)


def write_report(results: dict, path: Path, img_dir: Path, intro: str = "") -> dict:
    """Write the markdown (table, noise table, plots, video, commands) to ``path``; -> {"report", "table", ...}."""
    cfg = results["config"]
    path.parent.mkdir(parents=True, exist_ok=True)
    files = dict(plots(results, img_dir))
    rows = table_rows(results)
    noise = noise_rows(results)
    cmd = command_line(cfg)
    seeds = len(results["seeds"])
    rel = lambda p: Path(p).resolve().relative_to(path.parent.resolve()) if Path(p).resolve().is_relative_to(
        path.parent.resolve()) else Path(p).resolve()
    lines = [intro.rstrip() + "\n" if intro else "",
             f"## Results: `--size {cfg['size']}` ({cfg['preset']} preset, {cfg['device']}), {seeds} training "
             f"seed(s) {', '.join(str(s) for s in results['seeds'])}", "",
             f"Reproduce: `{cmd}` (then `--report {path.name}`); all numbers below come from that run's "
             f"`{Path(cfg['out']) / 'results.json'}` ({results['seconds']:.0f} s for the steps run in the last call).",
             "",
             f"Held-out layouts: {cfg['eval_episodes']} (seeds {900000}..{900000 + cfg['eval_episodes'] - 1}), "
             f"{cfg['max_seconds']:g} s per episode; demos {cfg['demos']} expert + {cfg['noisy_demos']} noisy; "
             f"{cfg['feedback_episodes']} labelled SFT rollouts; {cfg['rounds']} stage-3 round(s) of "
             f"{cfg['round_episodes']} rollouts; table at {100 * cfg['flips'][0]:g} % flipped labels. "
             "Mean ± 95 % CI over training seeds (no CI with one seed).", "",
             "| policy | success rate (%) | mean time to goal (s) | collisions/episode |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {fmt(r['success_rate'], r['success_rate_ci'], 100)} | "
                     f"{fmt(r['mean_time_to_goal'], r['mean_time_to_goal_ci'])} | "
                     f"{fmt(r['collisions_per_episode'], r['collisions_per_episode_ci'], 1, 2)} |")
    lines += ["", "Stage 3 (`both`: rwfm + acfm, anchored) against label noise:", "",
              "| flipped labels | labels = truth (%) | reward model accuracy vs truth (%) | AUROC | stage-3 success (%) "
              "| gain over SFT (points) |", "|---|---|---|---|---|---|"]
    for r in noise:
        lines.append(f"| {100 * r['flip']:g} % | {fmt(*r['label_agreement'], 100)} | {fmt(*r['rm_accuracy'], 100)} | "
                     f"{fmt(*r['rm_auroc'], 1, 3)} | {fmt(*r['stage3_success'], 100)} | {fmt(*r['gain'], 100)} |")
    lines += ["", f"![success vs round]({rel(files['rounds'])})", f"![reward model accuracy vs noise]({rel(files['noise'])})",
              ""]
    video = results.get("video")
    if video and Path(video["path"]).is_file():
        import shutil
        files["video"] = img_dir / "rlhf_side_by_side.mp4"
        shutil.copyfile(video["path"], files["video"])
        lines.append(f"Side-by-side video (left SFT, right stage 3 `both`, held-out layout {video['seed']} "
                     f"{video['task']!r}; SFT {'reached' if video['sft']['success'] else 'did not reach'} the goal, "
                     f"stage 3 {'reached' if video['stage3']['success'] else 'did not reach'} it): "
                     f"[{files['video'].name}]({rel(files['video'])})")
    lines.append("")
    path.write_text("\n".join(lines))
    table = {"rows": rows, "noise": [dict(r) for r in noise], "command": cmd}
    (Path(cfg["out"]) / "table.json").write_text(json.dumps(table, indent=1))
    return {"report": path, "plots": files, "table": table}
