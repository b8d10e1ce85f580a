"""Reward-model losses: regression, binary, pairwise ranking, combinable; class balancing.

    loss_fn = RewardLoss.parse("mse+0.5*bt", pairs_per_batch=64)
    loss, logs = loss_fn(outputs, target, episode=episode_ids, weight=w, generator=g)

``outputs`` is the reward head's list of estimates (one [B] tensor per refinement step; a single
tensor is accepted too); every term is averaged over the steps. Terms:

* ``mse``       — (r - y)^2.
* ``focal_mse`` — focal-weighted MSE: each sample's squared error weighted by ``|r - y|^gamma``
  (detached, normalised to mean 1 over the batch), so the hard samples dominate; gamma 0 = MSE.
* ``bce``       — binary cross-entropy on logits ``r``; the target is binarised ``y > threshold``.
* ``focal``     — binary focal loss (Lin et al.): ``-alpha_t (1 - p_t)^gamma log p_t``, ``p = sigmoid(r)``,
  ``alpha_t = alpha`` for positives and ``1 - alpha`` for negatives (``alpha=None``: no alpha factor).
* ``bt``        — Bradley–Terry ranking: ``-log sigmoid(r_i - r_j)`` over pairs with ``y_i > y_j`` in the
  batch (within and across episodes, ``pair_scope`` restricts), at most ``pairs_per_batch`` pairs drawn
  with the generator (0 = all). A batch without such a pair contributes 0.

``mse``/``focal_mse`` read ``r`` as the reward itself, ``bce``/``focal`` as a logit, ``bt`` only ranks;
combine a regression or a binary loss with ``bt``, not regression with binary (they pull the scale
two ways). Per-sample weights (class balancing, :class:`ClassBalance`) weight every term but ``bt``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

LOSS_NAMES = ("mse", "focal_mse", "bce", "focal", "bt")
REGRESSION, BINARY, RANKING = ("mse", "focal_mse"), ("bce", "focal"), ("bt",)
PAIR_SCOPES = ("all", "within", "across")
_TERM = re.compile(r"^\s*(?:(?P<w>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[A-Za-z_]+)\s*$")


class LossConfigError(ValueError):
    """A bad loss spec or parameter (one line, naming the field and what is allowed)."""


# -- elementary losses (per sample, no reduction) -----------------------------------------------
def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B], [B] -> [B] squared errors."""
    return (pred.float() - target.float()) ** 2


def focal_mse(pred: torch.Tensor, target: torch.Tensor, gamma: float = 1.0, eps: float = 1e-6) -> torch.Tensor:
    """[B] squared errors weighted by ``|e|^gamma`` (detached, mean-normalised to 1)."""
    err = pred.float() - target.float()
    w = (err.detach().abs() + eps) ** gamma                                   # [B]
    return w / w.mean() * err ** 2


def binarise(target: torch.Tensor, threshold: float) -> torch.Tensor:
    """1.0 where ``target > threshold`` else 0.0."""
    return (target.float() > threshold).float()


def bce(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """[B] binary cross-entropy on logits, targets binarised at ``threshold``."""
    return F.binary_cross_entropy_with_logits(logits.float(), binarise(target, threshold), reduction="none")


def focal(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float | None = None,
          threshold: float = 0.5) -> torch.Tensor:
    """[B] binary focal loss on logits (targets binarised at ``threshold``)."""
    y = binarise(target, threshold)
    logp_t = -F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none")   # log p_t
    loss = -((1 - logp_t.exp()).clamp_min(0) ** gamma) * logp_t
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return loss


def preference_pairs(target: torch.Tensor, episode: torch.Tensor | None = None, scope: str = "all",
                     max_pairs: int = 0, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (i, j) of the batch with ``target[i] > target[j]`` (i preferred).

    ``scope``: ``all`` pairs, only ``within`` one episode, or only ``across`` episodes (needs
    ``episode`` [B]). ``max_pairs`` > 0 keeps a uniform random subset of that many (``generator``)."""
    t = target.detach().float().reshape(-1)
    better = t[:, None] > t[None, :]                                            # [B, B]
    if scope != "all":
        if episode is None:
            raise LossConfigError(f"pair_scope = {scope!r} needs the episode of each sample")
        same = episode.reshape(-1, 1).to(t.device) == episode.reshape(1, -1).to(t.device)
        better &= same if scope == "within" else ~same
    i, j = better.nonzero(as_tuple=True)
    if max_pairs and i.numel() > max_pairs:
        keep = torch.randperm(i.numel(), generator=generator)[:max_pairs].to(i.device)
        i, j = i[keep], j[keep]
    return i, j


def bradley_terry(pred: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """[P] ``-log sigmoid(r_i - r_j)`` per pair."""
    p = pred.float()
    return F.softplus(-(p[i] - p[j]))


# -- class balancing ---------------------------------------------------------------------------
@dataclass
class ClassBalance:
    """Per-sample weights making each class (label value) contribute equally to a loss.

    ``weight(c) = N / (K * count(c))`` over the N training labels of K classes, so the weights of
    the training set average 1. Labels are compared after rounding to 6 decimals (score rewards
    such as 0.2 stay exact)."""
    classes: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        if len(self.classes) != len(self.weights) or not self.classes:
            raise LossConfigError(f"ClassBalance: {len(self.classes)} classes for {len(self.weights)} weights")

    @classmethod
    def from_labels(cls, labels: Iterable[float]) -> "ClassBalance":
        values = torch.as_tensor(list(labels), dtype=torch.float64).round(decimals=6)
        if values.numel() == 0:
            raise LossConfigError("ClassBalance.from_labels: no labels")
        classes, counts = torch.unique(values, return_counts=True)
        w = values.numel() / (len(classes) * counts.double())
        return cls(tuple(classes.tolist()), tuple(w.tolist()))

    def __call__(self, target: torch.Tensor) -> torch.Tensor:
        """[B] targets -> [B] weights (a label never seen in training gets weight 1)."""
        t = target.detach().double().reshape(-1).round(decimals=6).cpu()
        classes = torch.tensor(self.classes, dtype=torch.float64)
        table = torch.tensor(self.weights, dtype=torch.float32)
        hit = t[:, None] == classes[None, :]                                    # [B, K]
        w = torch.where(hit.any(1), table[hit.float().argmax(1)], torch.ones(()))
        return w.to(target.device)

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "weights": list(self.weights)}


def batch_balance(target: torch.Tensor) -> torch.Tensor:
    """[B] weights balancing the classes present in this batch only (each class sums to B/K)."""
    return ClassBalance.from_labels(target.detach().cpu().tolist())(target)


def balanced_indices(labels: Sequence[float], num_samples: int | None = None, seed: int = 0) -> list[int]:
    """Indices drawn with replacement so that every class is drawn equally often in expectation
    (a class-balanced sampler as a plain list: usable as a Dataset view or a DataLoader sampler)."""
    values = torch.as_tensor(list(labels), dtype=torch.float64).round(decimals=6)
    if values.numel() == 0:
        raise LossConfigError("balanced_indices: no labels")
    _, inverse, counts = torch.unique(values, return_inverse=True, return_counts=True)
    p = 1.0 / counts.double()[inverse]
    g = torch.Generator().manual_seed(seed)
    n = num_samples or values.numel()
    return torch.multinomial(p, n, replacement=True, generator=g).tolist()


# -- the combined loss ---------------------------------------------------------------------------
@dataclass
class RewardLoss:
    """A weighted sum of loss terms, e.g. ``RewardLoss.parse("mse+0.5*bt")``.

    ``gamma``: focal exponent (``focal``; ``focal_mse`` uses ``focal_mse_gamma``); ``alpha``: focal
    class factor or None; ``threshold``: binarisation of targets for ``bce``/``focal``;
    ``pairs_per_batch``: cap on Bradley–Terry pairs (0 = all); ``pair_scope``: all|within|across."""
    terms: tuple[tuple[str, float], ...]
    gamma: float = 2.0
    focal_mse_gamma: float = 1.0
    alpha: float | None = None
    threshold: float = 0.5
    pairs_per_batch: int = 256
    pair_scope: str = "all"

    def __post_init__(self):
        terms = tuple((str(n), float(w)) for n, w in self.terms)
        if not terms:
            raise LossConfigError(f"loss: empty; known losses: {', '.join(LOSS_NAMES)}")
        for name, w in terms:
            if name not in LOSS_NAMES:
                raise LossConfigError(f"loss {name!r}: unknown; known losses: {', '.join(LOSS_NAMES)}")
            if not (math.isfinite(w) and w > 0):
                raise LossConfigError(f"loss {name!r}: weight {w!r} must be a positive number")
        names = [n for n, _ in terms]
        if len(set(names)) != len(names):
            raise LossConfigError(f"loss {self.spec_of(terms)!r}: a term appears twice")
        self.terms = terms
        for name in ("gamma", "focal_mse_gamma"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise LossConfigError(f"loss {name} = {v!r}: must be a number >= 0")
        if self.alpha is not None and not (0 < self.alpha < 1):
            raise LossConfigError(f"loss alpha = {self.alpha!r}: must be in (0, 1) or None")
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)):
            raise LossConfigError(f"loss threshold = {self.threshold!r}: must be a finite number")
        if not isinstance(self.pairs_per_batch, int) or isinstance(self.pairs_per_batch, bool) \
                or self.pairs_per_batch < 0:
            raise LossConfigError(f"pairs_per_batch = {self.pairs_per_batch!r}: must be an integer >= 0 (0 = all pairs)")
        if self.pair_scope not in PAIR_SCOPES:
            raise LossConfigError(f"pair_scope = {self.pair_scope!r}: allowed {PAIR_SCOPES}")

    @staticmethod
    def spec_of(terms) -> str:
        return "+".join(n if w == 1 else f"{w:g}*{n}" for n, w in terms)

    @classmethod
    def parse(cls, spec: "str | Sequence[tuple[str, float]] | RewardLoss", **params) -> "RewardLoss":
        """``"mse+0.5*bt"`` or ``[("mse", 1.0), ("bt", 0.5)]`` (or a RewardLoss, returned as is)."""
        if isinstance(spec, RewardLoss):
            return spec
        if isinstance(spec, str):
            terms = []
            for part in spec.split("+"):
                m = _TERM.match(part)
                if not m:
                    raise LossConfigError(f"loss {spec!r}: cannot read {part.strip()!r}; write e.g. 'mse+0.5*bt' "
                                          f"(known losses: {', '.join(LOSS_NAMES)})")
                terms.append((m["name"].lower(), float(m["w"] or 1.0)))
        else:
            try:
                terms = [(n, float(w)) for n, w in spec]
            except (TypeError, ValueError):
                raise LossConfigError(f"loss {spec!r}: expected a spec like 'mse+0.5*bt' or (name, weight) pairs") from None
        return cls(tuple(terms), **params)

    @property
    def spec(self) -> str:
        return self.spec_of(self.terms)

    @property
    def output_kind(self) -> str:
        """What the model's output means under this loss: ``logit`` (binary terms), ``value`` (regression) or ``rank``."""
        names = {n for n, _ in self.terms}
        if names & set(BINARY):
            return "logit"
        return "value" if names & set(REGRESSION) else "rank"

    def to_dict(self) -> dict:
        return {"spec": self.spec, "gamma": self.gamma, "focal_mse_gamma": self.focal_mse_gamma, "alpha": self.alpha,
                "threshold": self.threshold, "pairs_per_batch": self.pairs_per_batch, "pair_scope": self.pair_scope,
                "output": self.output_kind}

    def _term(self, name: str, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
              pairs: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        if name == "bt":
            i, j = pairs
            if i.numel() == 0:
                return pred.sum() * 0.0                                         # keeps the graph, adds nothing
            return bradley_terry(pred, i, j).mean()
        if name == "mse":
            per = mse(pred, target)
        elif name == "focal_mse":
            per = focal_mse(pred, target, self.focal_mse_gamma)
        elif name == "bce":
            per = bce(pred, target, self.threshold)
        else:
            per = focal(pred, target, self.gamma, self.alpha, self.threshold)
        if weight is None:
            return per.mean()
        return (per * weight).sum() / weight.sum().clamp_min(1e-12)

    def __call__(self, outputs: "torch.Tensor | list[torch.Tensor]", target: torch.Tensor,
                 episode: torch.Tensor | None = None, weight: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """outputs [B] or a list of [B] (refinement steps); target [B]; episode [B]; weight [B]
        -> (scalar loss, {"loss/<term>": value, "pairs": n, ...})."""
        outs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        target = target.to(outs[0].device).float().reshape(-1)
        for o in outs:
            if o.shape != target.shape:
                raise ValueError(f"loss: prediction shape {tuple(o.shape)} != target shape {tuple(target.shape)}")
        if weight is not None:
            weight = weight.to(target.device).float().reshape(-1)
        pairs = None
        logs: dict[str, float] = {}
        if any(n == "bt" for n, _ in self.terms):
            pairs = preference_pairs(target, episode, self.pair_scope, self.pairs_per_batch, generator)
            logs["pairs"] = float(pairs[0].numel())
            if episode is not None and pairs[0].numel():
                ep = episode.reshape(-1).to(pairs[0].device)
                logs["pairs_within"] = float((ep[pairs[0]] == ep[pairs[1]]).sum())
        total = 0.0
        for name, w in self.terms:
            value = torch.stack([self._term(name, o, target, weight, pairs) for o in outs]).mean()
            logs[f"loss/{name}"] = float(value.detach())
            total = total + w * value
        logs["loss"] = float(total.detach())
        return total, logs
