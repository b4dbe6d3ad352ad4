"""Attention modules against the same formulas written in torch (float64), and masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import microgradnn as mg
from microgradnn.nn.attention import AdditiveAttention, DotAttention, GeneralAttention, lengths_to_mask

B, S, Q, K = 3, 6, 5, 7


def _t(a: np.ndarray, grad: bool = True) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def _torch_scores(kind: str, params: dict, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The score functions as the papers write them."""
    if kind == "additive":  # v . tanh(W_q q + W_k k + b)
        hidden = torch.tanh((q @ params["query_proj.weight"].T)[:, None, :]
                            + k @ params["key_proj.weight"].T + params["key_proj.bias"])
        return hidden @ params["v"]
    if kind == "dot":  # q . k
        return torch.einsum("bq,bsq->bs", q, k)
    return torch.einsum("bq,qk,bsk->bs", q, params["linear.weight"], k)  # q . (W k)


def _make(kind: str):
    if kind == "additive":
        return AdditiveAttention(Q, K, attention_size=4)
    if kind == "dot":
        return DotAttention(K, K)
    return GeneralAttention(Q, K)


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
@pytest.mark.parametrize("masked", [False, True])
def test_outputs_and_gradients_match_torch(kind, masked):
    rng = np.random.default_rng(1)
    att = _make(kind).double()
    for p in att.parameters():
        p.array[...] = rng.normal(size=p.shape)
    qsize = K if kind == "dot" else Q
    q_np, k_np = rng.normal(size=(B, qsize)), rng.normal(size=(B, S, K))
    lengths = np.array([6, 2, 4]) if masked else np.full(B, S)
    mask = lengths_to_mask(lengths, S)
    w_ctx, w_att = rng.normal(size=(B, K)), rng.normal(size=(B, S))  # random weights for the loss

    q, k = mg.tensor(q_np, dtype=mg.float64, requires_grad=True), mg.tensor(k_np, dtype=mg.float64, requires_grad=True)
    for p in att.parameters():
        assert p.dtype == mg.float64
    context, weights = att(q, k, mask=mask if masked else None)
    ((context * mg.tensor(w_ctx)).sum() + (weights * mg.tensor(w_att)).sum()).backward()

    tq, tk = _t(q_np), _t(k_np)
    tparams = {n: _t(p.array.astype(np.float64)) for n, p in att.named_parameters()}
    scores = _torch_scores(kind, tparams, tq, tk)
    if masked:
        scores = scores.masked_fill(~torch.tensor(mask), float("-inf"))
    t_weights = torch.softmax(scores, -1)
    t_context = torch.einsum("bs,bsk->bk", t_weights, tk)
    ((t_context * torch.tensor(w_ctx)).sum() + (t_weights * torch.tensor(w_att)).sum()).backward()

    np.testing.assert_allclose(weights.array, t_weights.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(context.array, t_context.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(q.grad.array, tq.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(k.grad.array, tk.grad.numpy(), rtol=1e-9, atol=1e-11)
    for n, p in att.named_parameters():
        np.testing.assert_allclose(p.grad.array, tparams[n].grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=n)


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_padded_positions_get_exactly_zero_weight_and_gradient(kind):
    att = _make(kind)
    rng = np.random.default_rng(2)
    qsize = K if kind == "dot" else Q
    q = mg.tensor(rng.normal(size=(B, qsize)).astype(np.float32), requires_grad=True)
    # Huge values at the padded positions: without the mask they would dominate the softmax.
    keys = rng.normal(size=(B, S, K)).astype(np.float32)
    lengths = np.array([1, 3, 6])
    for b, n in enumerate(lengths):
        keys[b, n:] = 1e3
    k = mg.tensor(keys, requires_grad=True)
    context, weights = att(q, k, mask=lengths_to_mask(lengths, S))
    w = weights.array
    for b, n in enumerate(lengths):
        assert (w[b, n:] == 0.0).all()
        assert (w[b, :n] > 0).all()
        np.testing.assert_allclose(w[b].sum(), 1.0, rtol=1e-6)
    assert w[0, 0] == 1.0  # a single real position takes all the weight
    (context.sum() + (weights * mg.tensor(rng.normal(size=(B, S)).astype(np.float32))).sum()).backward()
    g = k.grad.array
    for b, n in enumerate(lengths):
        assert (g[b, n:] == 0.0).all(), "padding must receive no gradient"
    assert np.isfinite(q.grad.array).all()


def test_dot_attention_needs_equal_sizes_and_masks_are_checked():
    with pytest.raises(ValueError, match="must equal key_size"):
        DotAttention(4, 5)
    att = GeneralAttention(Q, K)
    with pytest.raises(ValueError, match="mask must be"):
        att(mg.randn(B, Q), mg.randn(B, S, K), mask=np.ones((B, S + 1), bool))
