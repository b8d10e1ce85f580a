"""The GR00T N1 network: Eagle backbone + flow-matching action head, on tensors.

``Gr00tN1.loss(batch)`` is the training objective and ``Gr00tN1.sample_actions(batch)`` the
inference chunk; both take the tensor batch that ``processor.Gr00tProcessor`` produces. The
state_dict keys are those of the official nvidia/GR00T-N1-2B checkpoint.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .action_head import FlowMatchingActionHead
from .backbone import EagleBackbone
from .configuration import ModelConfig


class Gr00tN1(nn.Module):
    def __init__(self, config: ModelConfig, image_token_id: int | None = None):
        super().__init__()
        self.config = config
        self.backbone = EagleBackbone(config.backbone, image_token_id)
        self.action_head = FlowMatchingActionHead(config.action_head)

    @property
    def image_token_id(self) -> int | None:
        return self.backbone.image_token_id

    @image_token_id.setter
    def image_token_id(self, value: int) -> None:
        self.backbone.image_token_id = value

    def features(self, batch: dict, graph_safe: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """-> backbone_features [B, L, D], attention mask [B, L]."""
        feats = self.backbone(batch["input_ids"], batch["attention_mask"], batch["pixel_values"], graph_safe)
        return feats, batch["attention_mask"]

    def loss(self, batch: dict, weights: torch.Tensor | None = None,
             condition: torch.Tensor | None = None) -> torch.Tensor:
        """Flow-matching loss of one batch (needs ``action`` and ``action_mask``); ``weights`` [B] per-sample
        loss weights (None: plain FM), ``condition`` [B] advantage-condition indices (conditioned heads)."""
        feats, mask = self.features(batch)
        return self.action_head.loss(feats, mask, batch["state"].to(feats.dtype), batch["action"].to(feats.dtype),
                                     batch["action_mask"], batch["embodiment_id"], weights=weights, condition=condition)

    def flow_terms(self, batch: dict, condition: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One flow-matching draw on a batch: ``action_head.flow_terms`` plus the inputs it read
        ("features", "features_mask", "state", "action_mask", "embodiment_id")."""
        feats, mask = self.features(batch)
        state = batch["state"].to(feats.dtype)
        terms = self.action_head.flow_terms(feats, mask, state, batch["action"].to(feats.dtype),
                                            batch["embodiment_id"], condition)
        return terms | {"features": feats, "features_mask": mask, "state": state, "action_mask": batch["action_mask"],
                        "embodiment_id": batch["embodiment_id"]}

    @torch.no_grad()
    def sample_actions(self, batch: dict, num_steps: int | None = None, generator: torch.Generator | None = None,
                       noise: torch.Tensor | None = None, graph_safe: bool = False, condition: str | None = None,
                       guidance: float | None = None) -> torch.Tensor:
        """-> normalised, padded action chunk [B, horizon, action_dim].

        ``noise`` [B, horizon, action_dim] is the flow's start (else drawn with ``generator``);
        ``graph_safe`` runs the backbone without host reads (see ``EagleBackbone.forward``);
        ``condition`` / ``guidance``: advantage condition and classifier-free guidance of a conditioned head
        (None: the config's defaults).
        """
        feats, mask = self.features(batch, graph_safe)
        return self.action_head.sample(feats, mask, batch["state"].to(feats.dtype), batch["embodiment_id"],
                                       num_steps=num_steps, generator=generator, noise=noise, condition=condition,
                                       guidance=guidance)


def parameter_counts(model: nn.Module) -> "OrderedDict[str, int]":
    """Parameters per component (vision, projector, LLM, backbone linear, action-head parts) and total."""
    groups = OrderedDict([
        ("backbone.vision", "backbone.model.vision_model."),
        ("backbone.mlp1", "backbone.model.mlp1."),
        ("backbone.llm", "backbone.model.language_model."),
        ("backbone.linear", "backbone.linear."),
        ("action_head.dit", "action_head.model."),
        ("action_head.state_encoder", "action_head.state_encoder."),
        ("action_head.action_encoder", "action_head.action_encoder."),
        ("action_head.action_decoder", "action_head.action_decoder."),
        ("action_head.position_embedding", "action_head.position_embedding."),
    ])
    counts: OrderedDict[str, int] = OrderedDict((k, 0) for k in groups)
    other = 0
    for name, p in model.named_parameters():
        for group, prefix in groups.items():
            if name.startswith(prefix):
                counts[group] += p.numel()
                break
        else:
            other += p.numel()
    counts = OrderedDict((k, v) for k, v in counts.items() if v)
    if other:
        counts["other"] = other
    counts["backbone"] = sum(v for k, v in counts.items() if k.startswith("backbone."))
    counts["action_head"] = sum(v for k, v in counts.items() if k.startswith("action_head."))
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
