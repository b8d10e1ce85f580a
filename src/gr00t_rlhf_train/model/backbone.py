"""The Eagle2 vision-language backbone of GR00T N1, built from transformers' SigLIP and Llama.

image [N, 3, S, S] -> SigLIP patches [N, (S/p)^2, Cv] -> pixel shuffle (2x2 patches -> one token)
-> mlp1 -> image tokens [N, T, D]; the tokens replace the ``<IMG_CONTEXT>`` placeholders of the
prompt's embeddings; the Llama LLM, truncated to ``select_layer`` layers, runs over the sequence;
its normed output goes through ``linear`` to ``backbone_features`` [B, L, project_to_dim].

Module names follow the official checkpoint: ``model.vision_model.vision_model.*``,
``model.mlp1.{0,1,3}``, ``model.language_model.model.*`` and ``linear``.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaConfig, LlamaModel, SiglipVisionConfig, SiglipVisionModel

from .configuration import BackboneConfig
from .cuda_graph import capturing

# The LLM's embedding ``padding_idx``: Eagle2's language config (Isaac-GR00T
# gr00t/model/backbone/eagle2_hg_model/config.json, ``llm_config.pad_token_id: 2``) makes the official
# Qwen2/Llama embedding an ``nn.Embedding(..., padding_idx=2)``: row 2 (``<|im_end|>``, also the padding
# token of the official format) gets no gradient when the embeddings train. Set on the embedding after it is
# built, so a fresh model's initial weights are unchanged (``nn.Embedding`` would zero row 2 at init; the
# official model always starts from pretrained Eagle weights, where row 2 is a trained vector). Training only:
# a loaded checkpoint's row 2 is whatever the file holds, and the forward pass is a plain lookup either way.
LLM_PADDING_IDX = 2


def pixel_shuffle(x: torch.Tensor) -> torch.Tensor:
    """Fold each 2x2 block of patch features into one token of 4x the width.

    x: [N, R, Q, C] patch grid -> [N, R/2 * Q/2, 4C]; the channels of token (i, j) are the
    patches (2i, 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1) in that order (Eagle's "v2" layout).
    """
    n, rows, cols, c = x.shape
    x = x.reshape(n, rows // 2, 2, cols // 2, 2, c)          # [N, i, a, j, b, C]
    x = x.permute(0, 1, 3, 2, 4, 5)                           # [N, i, j, a, b, C]
    return x.reshape(n, (rows // 2) * (cols // 2), 4 * c)     # [N, T, 4C]


class VisionTower(nn.Module):
    """Holder that gives the SigLIP weights the official prefix ``vision_model.vision_model.*``.

    Newer transformers releases put the SigLIP transformer directly in ``SiglipVisionModel``,
    older ones nest it under ``.vision_model``; either way the inner transformer lands here.
    """

    def __init__(self, config: SiglipVisionConfig):
        super().__init__()
        siglip = SiglipVisionModel(config)
        self.vision_model = getattr(siglip, "vision_model", siglip)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] -> patch features [N, (S/p)^2, Cv] (after the post LayerNorm)."""
        return self.vision_model(pixel_values=pixel_values).last_hidden_state


class LanguageModel(nn.Module):
    """Holder that gives the Llama weights the official prefix ``language_model.model.*`` (no lm_head)."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.model = LlamaModel(config)


class EagleModel(nn.Module):
    """SigLIP + projector + truncated Llama, named as in the official checkpoint."""

    def __init__(self, config: BackboneConfig):
        super().__init__()
        v, lm = config.vision, config.language
        vision_config = SiglipVisionConfig(
            hidden_size=v.hidden_size, intermediate_size=v.intermediate_size, num_hidden_layers=v.num_layers,
            num_attention_heads=v.num_heads, image_size=v.image_size, patch_size=v.patch_size,
            layer_norm_eps=v.layer_norm_eps, hidden_act="gelu_pytorch_tanh", vision_use_head=False,
            attn_implementation="sdpa",
        )
        llm_config = LlamaConfig(
            vocab_size=lm.vocab_size, hidden_size=lm.hidden_size, intermediate_size=lm.intermediate_size,
            num_hidden_layers=lm.select_layer, num_attention_heads=lm.num_heads,
            num_key_value_heads=lm.num_kv_heads, rms_norm_eps=lm.rms_norm_eps,
            max_position_embeddings=lm.max_position_embeddings, rope_theta=lm.rope_theta,
            tie_word_embeddings=False, use_cache=False, attn_implementation="sdpa",
        )
        self.vision_model = VisionTower(vision_config)
        shuffled = v.hidden_size * 4
        self.mlp1 = nn.Sequential(
            nn.LayerNorm(shuffled),
            nn.Linear(shuffled, lm.hidden_size),
            nn.GELU(),
            nn.Linear(lm.hidden_size, lm.hidden_size),
        )
        self.language_model = LanguageModel(llm_config)
        # the padding index is set after construction so a fresh model's initial weights stay as they were
        # (row 2 random, not zeroed): only its gradient is blocked (see LLM_PADDING_IDX)
        llm_config.pad_token_id = LLM_PADDING_IDX
        self.language_model.model.padding_idx = LLM_PADDING_IDX
        self.language_model.model.embed_tokens.padding_idx = LLM_PADDING_IDX
        self.grid = v.grid

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [N, 3, S, S] -> image tokens [N, T, D_llm]."""
        patches = self.vision_model(pixel_values)                                  # [N, grid*grid, Cv]
        n, _, c = patches.shape
        patches = patches.reshape(n, self.grid, self.grid, c)                     # [N, grid, grid, Cv]
        return self.mlp1(pixel_shuffle(patches))                                  # [N, T, D_llm]


class EagleBackbone(nn.Module):
    """Vision-language features for the action head and the reward heads."""

    def __init__(self, config: BackboneConfig, image_token_id: int | None = None):
        super().__init__()
        self.config = config
        self.model = EagleModel(config)
        self.linear = nn.Linear(config.language.hidden_size, config.project_to_dim)
        self.image_token_id = image_token_id  # id of <IMG_CONTEXT>; set from the tokenizer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                pixel_values: torch.Tensor, graph_safe: bool = False) -> torch.Tensor:
        """input_ids, attention_mask [B, L]; pixel_values [N, 3, S, S] (all images of the batch,
        in prompt order) -> backbone_features [B, L, project_to_dim].

        ``graph_safe=True`` (the CUDA-graph path) gives the LLM a ready 4-D mask
        (``causal_padding_mask``) instead of the 2-D one, which transformers reads on the host to
        pick a kernel. The image-slot count check (a host read) is skipped while a CUDA graph is
        being captured; the eager warm-up before each capture runs it.
        """
        if self.image_token_id is None:
            raise RuntimeError("EagleBackbone.image_token_id is not set: load the tokenizer (it defines <IMG_CONTEXT>)")
        embeds = self.model.language_model.model.embed_tokens(input_ids)       # [B, L, D_llm]
        images = self.model.image_tokens(pixel_values.to(embeds.dtype))        # [N, T, D_llm]
        slots = input_ids == self.image_token_id                               # [B, L]
        if not capturing():
            n_slots, n_tokens = int(slots.sum()), images.shape[0] * images.shape[1]
            if n_slots != n_tokens:
                raise ValueError(f"the prompts hold {n_slots} <IMG_CONTEXT> tokens but the {images.shape[0]} images "
                                 f"give {n_tokens} image tokens ({images.shape[1]} each)")
        # under autocast the image tokens come out in the autocast dtype (bf16), the embeddings in the weights'
        embeds = embeds.masked_scatter(slots.unsqueeze(-1), images.reshape(-1, images.shape[-1]).to(embeds.dtype))
        mask = causal_padding_mask(attention_mask) if graph_safe else attention_mask
        hidden = self.model.language_model.model(
            inputs_embeds=embeds, attention_mask=mask, use_cache=False,
        ).last_hidden_state                                                     # [B, L, D_llm]
        return self.linear(hidden)                                              # [B, L, project_to_dim]


def causal_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Padding mask [B, L] (1 = token) -> boolean SDPA mask [B, 1, L, L] (True = attend), causal.

    With left padding (the official format) the query rows of the leading pad tokens see no key at all.
    They are left fully masked: PyTorch SDPA (>= 2.5) returns zeros for such rows, which is what
    transformers 5 gives the 2-D mask (the eager path) and what the official model's flash-attention-2
    gives at pad positions (it drops them and pads the output with zeros). Real tokens never depend on
    these rows; the pad positions' features do, and the official DiT cross-attends to them unmasked.
    Positions are 0..L-1 in every row whatever the padding (no position ids are passed, as official).
    """
    length = attention_mask.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()  # [L, L]
    return causal[None, None] & attention_mask.bool()[:, None, None, :]                         # [B, 1, L, L]
