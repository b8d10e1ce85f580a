"""Training details as official GR00T N1: DiT dropout placement, the LLM embedding's padding index, and
the reward head's first-token pooling under left padding."""
from __future__ import annotations

import torch
from torch import nn

from gr00t_rlhf_train.model.backbone import LLM_PADDING_IDX
from gr00t_rlhf_train.model.dit import TransformerBlock
from gr00t_rlhf_train.model.reward_head import pool_tokens


def test_dit_block_dropout_is_on_the_attention_output_not_its_weights():
    torch.manual_seed(0)
    block = TransformerBlock(16, 2, 8, cross_attention_dim=12, dropout=0.5)
    assert isinstance(block.final_dropout, nn.Dropout) and block.final_dropout.p == 0.5
    assert not any("final_dropout" in k for k in block.state_dict())          # checkpoints unchanged
    x, temb, ctx = torch.randn(2, 5, 16), torch.randn(2, 16), torch.randn(2, 7, 12)
    block.eval()
    expected = block(x, temb, ctx, None)
    # with every dropout module silenced, training mode must equal eval mode: no dropout on attention weights
    block.train()
    for name, module in block.named_modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    torch.testing.assert_close(block(x, temb, ctx, None), expected)
    # the block's final_dropout acts on the attention branch (before the residual)
    block.final_dropout.p = 1.0
    h = x + 0.0                                                               # attention branch zeroed
    torch.testing.assert_close(block(x, temb, ctx, None), h + block.ff(block.norm3(h)))


def test_llm_embedding_row_2_gets_no_gradient(tiny_policy):
    embed = tiny_policy.model.backbone.model.language_model.model.embed_tokens
    assert embed.padding_idx == LLM_PADDING_IDX == 2
    assert embed.weight[2].abs().sum() > 0                 # a fresh model's row 2 keeps its random init
    assert tiny_policy.processor.tokenizer.convert_ids_to_tokens(2) == "<|im_end|>"
    ids = torch.tensor([[1, 2, 5, 2, 7]])
    embed.weight.grad = None
    embed(ids).sum().backward()
    assert embed.weight.grad[2].abs().sum() == 0 and embed.weight.grad[1].abs().sum() > 0
    embed.weight.grad = None


def test_first_pooling_takes_the_first_real_token_with_left_padding():
    features = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])                      # row 0 left-padded by 2
    torch.testing.assert_close(pool_tokens(features, left, "first"), torch.stack([features[0, 2], features[1, 0]]))
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])                     # legacy right padding: position 0
    torch.testing.assert_close(pool_tokens(features, right, "first"), features[:, 0])
    torch.testing.assert_close(pool_tokens(features, left.bool(), "last"), features[:, 3])
