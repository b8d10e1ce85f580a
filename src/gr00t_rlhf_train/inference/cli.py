"""``gr00t-rlhf serve policy|reward SOURCE``: a policy or reward model served over the network (no ROS).

    gr00t-rlhf serve policy runs/sft/best --port 5555                          # robots: policy:=tcp://THIS_HOST:5555
    gr00t-rlhf serve policy runs/sft/best --reward-model runs/reward/best --num-candidates 8
    gr00t-rlhf serve policy runs/rl/best --condition good --guidance 2      # an acfm policy (train rl)
    gr00t-rlhf serve reward runs/reward/best --port 5556

The model is loaded and warmed up (CUDA graphs captured) before the port opens; then one line
``serving <kind> <source> on tcp://HOST:PORT (...)`` is printed. Ctrl-C / SIGTERM stop it.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time

from gr00t_rlhf_train.model.configuration import ADVANTAGE_CONDITIONS   # no torch

def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve a policy or reward model over the network (remote inference)")
    sub = p.add_subparsers(dest="serve_command", metavar="KIND")
    sub.required = True
    for kind in ("policy", "reward"):
        s = sub.add_parser(kind, help=f"serve a {'policy (optionally best-of-N)' if kind == 'policy' else 'reward model'}")
        s.add_argument("source", metavar="SOURCE", help="checkpoint directory" + (
            " (ours or an official GR00T N1 one) or a preset name (random weights)" if kind == "policy" else ""))
        if kind == "policy":
            s.add_argument("--reward-model", default="", help="reward checkpoint for best-of-N (with --num-candidates > 1)")
            s.add_argument("--num-candidates", type=int, default=1, help="N chunks sampled per request (default 1)")
            s.add_argument("--condition", default=None, choices=ADVANTAGE_CONDITIONS,
                           help="advantage-conditioned policies (train rl --method acfm): sample under this "
                                "condition (default: the checkpoint's, usually good)")
            s.add_argument("--guidance", type=float, default=None,
                           help="advantage-conditioned policies: classifier-free guidance w >= 0 (1: plain "
                                "conditional; default: the checkpoint's)")
        s.add_argument("--host", default="127.0.0.1",
                       help="interface to listen on (default 127.0.0.1; 0.0.0.0 = every interface)")
        s.add_argument("--port", type=int, default=5555 if kind == "policy" else 5556,
                       help="TCP port (0 = any free port, printed at start)")
        s.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
        s.add_argument("--no-cuda-graphs", action="store_true", help="run eagerly on CUDA (default: CUDA graphs)")
        s.add_argument("--tokenizer", default=None, help="tokenizer directory (official checkpoints ship none)")
        s.add_argument("--no-warmup", action="store_true", help="open the port before warming the model up")
        s.add_argument("--debug-delay-s", type=float, default=0.0,
                       help="TEST ONLY: sleep this long before every act/score (to test client timeouts)")
        s.set_defaults(func=cmd_serve, kind=kind)


def _address(host: str, port: int) -> str:
    if not 0 <= port < 65536:
        raise ValueError(f"--port {port}: must be in 0..65535")
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"tcp://{host}:{port if port else '*'}"


def cmd_serve(args: argparse.Namespace) -> int:
    from .api import InferenceError
    from .runtime import LocalPolicy, LocalReward
    from .server import InferenceServer

    try:
        address = _address(args.host, args.port)
        if args.debug_delay_s < 0:
            raise ValueError(f"--debug-delay-s {args.debug_delay_s}: must be >= 0")
        t0 = time.perf_counter()
        if args.kind == "policy":
            runtime = LocalPolicy.open(args.source, args.reward_model or None, args.num_candidates, args.device,
                                       not args.no_cuda_graphs, args.tokenizer, args.condition, args.guidance)
        else:
            runtime = LocalReward.open(args.source, args.device, not args.no_cuda_graphs, args.tokenizer)
        if not args.no_warmup:
            runtime.warmup()
        server = InferenceServer(runtime, address, debug_delay_s=args.debug_delay_s)
    except (InferenceError, ValueError) as e:
        print(f"error: serve {args.kind}: {e}", file=sys.stderr)
        return 2
    info = runtime.info()
    extra = f", best-of-{info['num_candidates']} with {info['reward_model']}" if info.get("num_candidates", 1) > 1 else ""
    if info.get("condition") is not None:
        extra += f", condition {info['condition']}, guidance {info['guidance']:g}"
    print(f"serving {args.kind} {args.source} on {server.address} ({info['device']}{extra}; "
          f"ready in {time.perf_counter() - t0:.1f} s)", flush=True)
    if args.debug_delay_s:
        print(f"warning: --debug-delay-s {args.debug_delay_s:g}: every request is delayed (test only)", flush=True)

    def _stop(signum, frame):
        server.stop()
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
        s = server.stats
        print(f"stopped: {s['requests']} requests, {s['errors']} errors, {s['replaced']} replaced by newer ones",
              flush=True)
    return 0
