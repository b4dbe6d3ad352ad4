"""Low-rank adaptation: ``lora`` and ``adalora``.

LoRA (Hu et al. 2021) keeps a pretrained weight W (out x in) frozen and learns a low-rank
change to it::

    W_eff = W + (alpha / r) * B @ A          A: (r, in), B: (out, r), r << min(out, in)

Only A and B train: r * (out + in) numbers instead of out * in. B starts at zero, so
``W_eff == W`` exactly and the fine-tune starts from the pretrained model's very outputs.
A starts random (PyTorch's Linear init), so the gradient reaching B is not zero.

Here the update is applied to the *weight*, through a parametrization
(:func:`microgradnn.nn.parametrize.register_parametrization`): the layer reads ``self.weight_ih_l0``
at forward time and gets ``W + s B A``. That is what lets LoRA reach the recurrent
weights ``weight_ih_l*`` / ``weight_hh_l*`` that the fused LSTM/GRU kernels consume whole
(an input-side LoRA, ``x A^T B^T``, would need a second path through every kernel).
Merging for export is then just "keep the effective weight": bit-for-bit what the
fine-tuned model computed.

LoRA's dropout (``dropout``) drops input *features* of the low-rank path, one mask per
forward pass shared by every time step and sequence (the "variational" dropout that
Gal & Ghahramani recommend for recurrent weights): ``B A diag(m) x``.

AdaLoRA (Zhang et al. 2023) writes the update in an SVD-like form ``P diag(lambda) Q``
and moves the rank budget during training to the weights that matter most: every
``delta_t`` steps the least important triplets (P column, lambda, Q row) are switched off
until the total rank has fallen, on a cubic schedule, from ``init_r`` to ``target_r`` per
weight on average. Importance is the smoothed sensitivity ``|w * dL/dw|`` times its
uncertainty (how much it fluctuates), summed over the triplet.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any

import numpy as np

from ..autograd import no_grad
from ..backend import to_host
from ..nn.module import Module, Parameter
from ..nn.parametrize import register_parametrization, remove_parametrizations
from ..tensor import Tensor, empty, rand, tensor, zeros
from .base import FinetuneError, Strategy, _as_list, match_globs

__all__ = ["LoRA", "AdaLoRA", "LoRAParametrization", "SVDParametrization"]

DEFAULT_TARGETS = ("rnn.*weight_*",)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise FinetuneError(message)


def _feature_dropout(a: Tensor, p: float) -> Tensor:
    """Drop columns of A (input features of the low-rank path), scaling the rest by 1/(1-p)."""
    keep = rand(a.shape[1], dtype=a.dtype, device=a._backend).array >= p
    return a * (keep.astype(a.dtype) / (1.0 - p))


def select_matrices(model: Module, globs: list[str], owner: str) -> list[tuple[str, Module, str]]:
    """``(name, module, attribute)`` of each 2-D parameter matched by ``globs``.

    1-D parameters (biases) a glob also matches are skipped; a glob that reaches no
    matrix at all is an error."""
    named = [(n, p) for n, p in model.named_parameters() if "parametrizations" not in n.split(".")]
    names = [n for n, _ in named]
    shapes = dict(named)
    chosen = match_globs(names, globs, option="targets", owner=owner)
    for pattern in globs:
        if not any(shapes[n].ndim == 2 for n in chosen if fnmatch.fnmatchcase(n, pattern)):
            raise FinetuneError(f"{owner}: targets: {pattern!r} matches only non-matrix parameters; "
                                f"low-rank updates need 2-D weights (matrices here: "
                                f"{', '.join(n for n in names if shapes[n].ndim == 2)})")
    out = []
    for name in chosen:
        if shapes[name].ndim != 2:
            continue
        module_path, _, attr = name.rpartition(".")
        module = model.get_submodule(module_path)
        if attr not in module._parameters:
            raise FinetuneError(f"{owner}: {name} is already parametrized")
        out.append((name, module, attr))
    return out


# ============================================================================ LoRA


class LoRAParametrization(Module):
    """``W -> W + scaling * B @ A`` with ``A`` (r, in) random and ``B`` (out, r) zero."""

    def __init__(self, weight: Tensor, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        out_features, in_features = weight.shape
        self.r, self.alpha, self.dropout = r, alpha, dropout
        self.scaling = alpha / r
        self.lora_A = Parameter(empty(r, in_features, dtype=weight.dtype, device=weight._backend))
        self.lora_B = Parameter(zeros(out_features, r, dtype=weight.dtype, device=weight._backend))
        bound = 1.0 / math.sqrt(in_features)  # Linear's (kaiming-uniform, a=sqrt(5)) bound, as peft
        with no_grad():
            self.lora_A.uniform_(-bound, bound)

    def forward(self, weight: Tensor) -> Tensor:
        a = self.lora_A
        if self.training and self.dropout > 0:
            a = _feature_dropout(a, self.dropout)
        return weight + (self.lora_B @ a) * self.scaling

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, dropout={self.dropout}"


class LoRA(Strategy):
    """Low-rank updates ``W + (alpha/r) B A`` on the weights matched by ``targets``.

    Args:
        targets: globs over parameter names; the matched matrices are adapted (Linear
            weights, ``rnn.weight_ih_l*`` / ``rnn.weight_hh_l*``, a cell's ``weight_ih``,
            even ``embedding.weight``). Default: every recurrent weight matrix.
        r: the rank of the update.
        alpha: the update is scaled by ``alpha / r`` (so changing r needs no new lr).
        dropout: probability of dropping an input feature of the low-rank path (training only).
    """

    name = "lora"

    def __init__(self, targets: list[str] | None = None, r: int = 8, alpha: float = 8.0, dropout: float = 0.0) -> None:
        super().__init__()
        self._options = {"targets": targets, "r": r, "alpha": alpha, "dropout": dropout}
        self.targets = list(DEFAULT_TARGETS) if targets is None else _as_list(targets, "targets", self.name)
        _check(isinstance(r, int) and not isinstance(r, bool) and r >= 1, f"{self.name}: r must be a positive int, got {r!r}")
        _check(isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha > 0,
               f"{self.name}: alpha must be a positive number, got {alpha!r}")
        _check(isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout < 1,
               f"{self.name}: dropout must be in [0, 1), got {dropout!r}")
        self.r, self.alpha, self.dropout = r, float(alpha), float(dropout)
        self.adapted: list[tuple[str, Module, str]] = []

    def _make(self, weight: Tensor) -> Module:
        return LoRAParametrization(weight, self.r, self.alpha, self.dropout)

    def _apply(self, model: Module) -> None:
        chosen = select_matrices(model, self.targets, self.name)
        self._freeze_all(model)
        self.adapted = []
        for name, module, attr in chosen:
            register_parametrization(module, attr, self._make(module._parameters[attr]))
            self.adapted.append((name, module, attr))

    def _merge(self, model: Module) -> None:
        for _, module, attr in reversed(self.adapted):  # last in, first out: restores the key order
            remove_parametrizations(module, attr, leave_parametrized=True)
        self.adapted = []


# ============================================================================ AdaLoRA


class SVDParametrization(Module):
    """``W -> W + scaling * P diag(lambda * mask) Q`` (AdaLoRA's triplets).

    Parameter names follow peft: ``lora_A`` is Q (r, in), ``lora_E`` is lambda (r,),
    ``lora_B`` is P (out, r). ``rank_mask`` (a buffer, saved with the delta) switches
    triplets off; lambda starts at zero so the model starts as pretrained."""

    def __init__(self, weight: Tensor, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        out_features, in_features = weight.shape
        self.r, self.alpha, self.dropout = r, alpha, dropout
        self.scaling = alpha / r
        dev, dt = weight._backend, weight.dtype
        self.lora_A = Parameter(empty(r, in_features, dtype=dt, device=dev))
        self.lora_E = Parameter(zeros(r, dtype=dt, device=dev))
        self.lora_B = Parameter(empty(out_features, r, dtype=dt, device=dev))
        self.register_buffer("rank_mask", tensor(np.ones(r), dtype=dt, device=dev))
        with no_grad():
            self.lora_A.normal_(0.0, 0.02)
            self.lora_B.normal_(0.0, 0.02)

    @property
    def rank(self) -> int:
        return int(float(self.rank_mask.array.sum()))

    def forward(self, weight: Tensor) -> Tensor:
        a = self.lora_A
        if self.training and self.dropout > 0:
            a = _feature_dropout(a, self.dropout)
        e = self.lora_E * self.rank_mask
        return weight + (self.lora_B @ (a * e.unsqueeze(1))) * self.scaling

    def orthogonality(self) -> Tensor:
        """``||Q Q^T - I||^2 + ||P^T P - I||^2``: how far P and Q are from orthonormal,
        which keeps ``P diag(lambda) Q`` an SVD so that lambda measures each direction."""
        xp = self.lora_A._backend.xp
        eye = tensor(xp.eye(self.r, dtype=self.lora_A.dtype), device=self.lora_A._backend)
        a, b = self.lora_A, self.lora_B
        return ((a @ a.T - eye) ** 2).sum() + ((b.T @ b - eye) ** 2).sum()

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, rank={self.rank}"


class AdaLoRA(LoRA):
    """LoRA with an SVD-shaped update whose rank budget is reallocated during training.

    Args:
        targets, alpha, dropout: as for :class:`LoRA`.
        init_r: the starting rank of every adapted weight.
        target_r: the final *average* rank (total budget ``target_r * n_weights``, shared:
            an important weight may keep all ``init_r`` while another drops to 0).
        total_steps: the length of training the schedule is laid out over.
        tinit: warm-up steps at the full budget (no pruning).
        tfinal: final steps at the target budget (the rank pattern is then fixed).
        delta_t: prune every ``delta_t`` steps between the two.
        beta1, beta2: smoothing of the sensitivity and of its uncertainty.
        orth_reg_weight: weight of the orthogonality penalty; the trainer adds
            :meth:`penalty` to the loss.

    The budget after step t (tinit < t <= total_steps - tfinal) is
    ``target + (init - target) * (1 - (t - tinit) / (total_steps - tfinal - tinit))**3``.
    :meth:`ranks` gives the rank of every adapted weight; after :meth:`merge` it stays in
    :attr:`final_ranks`."""

    name = "adalora"

    def __init__(self, targets: list[str] | None = None, init_r: int = 12, target_r: int = 8, alpha: float = 8.0,
                 dropout: float = 0.0, total_steps: int = 1000, tinit: int = 0, tfinal: int = 0,
                 delta_t: int = 10, beta1: float = 0.85, beta2: float = 0.85, orth_reg_weight: float = 0.5) -> None:
        _check(isinstance(init_r, int) and not isinstance(init_r, bool) and init_r >= 1,
               f"adalora: init_r must be a positive int, got {init_r!r}")
        super().__init__(targets, init_r, alpha, dropout)
        _check(isinstance(target_r, int) and not isinstance(target_r, bool) and 0 <= target_r <= init_r,
               f"adalora: target_r must be an int in 0..init_r ({init_r}), got {target_r!r}")
        for key, value in (("total_steps", total_steps), ("tinit", tinit), ("tfinal", tfinal), ("delta_t", delta_t)):
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= (1 if key in ("total_steps", "delta_t") else 0),
                   f"adalora: {key} must be a {'positive' if key in ('total_steps', 'delta_t') else 'non-negative'} int, got {value!r}")
        _check(tinit + tfinal < total_steps,
               f"adalora: tinit + tfinal ({tinit} + {tfinal}) must be less than total_steps ({total_steps})")
        for key, value in (("beta1", beta1), ("beta2", beta2)):
            _check(isinstance(value, (int, float)) and 0 <= value < 1, f"adalora: {key} must be in [0, 1), got {value!r}")
        _check(isinstance(orth_reg_weight, (int, float)) and orth_reg_weight >= 0,
               f"adalora: orth_reg_weight must be a non-negative number, got {orth_reg_weight!r}")
        self._options = {"targets": targets, "init_r": init_r, "target_r": target_r, "alpha": alpha,
                         "dropout": dropout, "total_steps": total_steps, "tinit": tinit, "tfinal": tfinal,
                         "delta_t": delta_t, "beta1": beta1, "beta2": beta2, "orth_reg_weight": orth_reg_weight}
        self.init_r, self.target_r = init_r, target_r
        self.total_steps, self.tinit, self.tfinal, self.delta_t = total_steps, tinit, tfinal, delta_t
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.orth_reg_weight = float(orth_reg_weight)
        self.final_ranks: dict[str, int] | None = None
        self._reset_tracking()

    def _reset_tracking(self) -> None:
        self._sens: dict[int, Any] = {}  # id(param) -> summed |p * grad| since the last on_step
        self._ema_ipt: dict[int, Any] = {}
        self._ema_unc: dict[int, Any] = {}
        self._removers: list = []

    def _make(self, weight: Tensor) -> Module:
        return SVDParametrization(weight, self.init_r, self.alpha, self.dropout)

    def _apply(self, model: Module) -> None:
        super()._apply(model)
        self._reset_tracking()
        self.final_ranks = None
        for fn in self._fns():
            for p in (fn.lora_A, fn.lora_E, fn.lora_B):
                self._removers.append(p.register_hook(self._recorder(p)))

    def _recorder(self, p: Parameter):
        key = id(p)

        def record(grad: Tensor) -> None:
            # sensitivity: how much the loss would change if this entry were zeroed (first order)
            s = abs(p.array * grad.array)
            self._sens[key] = s if key not in self._sens else self._sens[key] + s

        return record

    def _fns(self) -> list[SVDParametrization]:
        return [module.parametrizations._modules[attr][0] for _, module, attr in self.adapted]

    # -- the schedule -------------------------------------------------------------

    def budget(self, step: int) -> tuple[int, bool]:
        """``(total rank budget after step, whether to prune at this step)``."""
        n = len(self.adapted)
        init, target = self.init_r * n, self.target_r * n
        if step <= self.tinit:
            return init, False
        if step > self.total_steps - self.tfinal:
            return target, True
        progress = (step - self.tinit) / (self.total_steps - self.tfinal - self.tinit)
        budget = int(target + (init - target) * (1.0 - progress) ** 3)
        return budget, step % self.delta_t == 0

    def on_step(self, step: int) -> None:
        """Update the importance scores from the gradients seen since the last call, and
        prune to the scheduled budget when the schedule says so."""
        if self.model is None:
            return
        if step <= self.total_steps - self.tfinal:
            self._update_importance()
        budget, prune = self.budget(step)
        if prune:
            self._prune_to(budget)

    def _update_importance(self) -> None:
        for fn in self._fns():
            for p in (fn.lora_A, fn.lora_E, fn.lora_B):
                key = id(p)
                ipt = self._sens.pop(key, None)
                if ipt is None:
                    continue
                if key not in self._ema_ipt:
                    self._ema_ipt[key] = ipt * 0.0
                    self._ema_unc[key] = ipt * 0.0
                self._ema_ipt[key] = self.beta1 * self._ema_ipt[key] + (1 - self.beta1) * ipt
                self._ema_unc[key] = self.beta2 * self._ema_unc[key] + (1 - self.beta2) * abs(ipt - self._ema_ipt[key])

    def _score(self, p: Parameter) -> np.ndarray:
        key = id(p)
        if key not in self._ema_ipt:
            return np.zeros(p.shape)
        return to_host(self._ema_ipt[key] * self._ema_unc[key]).astype(np.float64)

    def triplet_scores(self) -> list[np.ndarray]:
        """Per adapted weight, the (init_r,) importance of each triplet:
        s(lambda_i) + mean_j s(Q_ij) + mean_j s(P_ji)."""
        return [self._score(fn.lora_E) + self._score(fn.lora_A).mean(axis=1) + self._score(fn.lora_B).mean(axis=0)
                for fn in self._fns()]

    def _prune_to(self, budget: int) -> None:
        fns = self._fns()
        masks = [to_host(fn.rank_mask.array) > 0 for fn in fns]
        active = sum(int(m.sum()) for m in masks)
        if active <= budget:
            return
        scores = self.triplet_scores()
        candidates = [(float(scores[w][i]), w, i) for w, m in enumerate(masks) for i in np.flatnonzero(m)]
        candidates.sort(key=lambda c: c[0])  # least important first
        with no_grad():
            for _, w, i in candidates[: active - budget]:
                fns[w].rank_mask._store(i, 0)
                fns[w].lora_E._store(i, 0)

    # -- reporting ----------------------------------------------------------------

    def ranks(self) -> dict[str, int]:
        """The current rank of every adapted weight, by parameter name."""
        if self.model is None and self.final_ranks is not None:
            return dict(self.final_ranks)
        return {name: fn.rank for (name, _, _), fn in zip(self.adapted, self._fns())}

    def report(self, model: Module | None = None) -> dict:
        out = super().report(model)
        out["ranks"] = self.ranks()
        out["budget"] = sum(out["ranks"].values())
        return out

    def penalty(self, model: Module | None = None) -> Any:
        """``orth_reg_weight`` times the mean orthogonality residual of the adapted weights:
        add it to the loss before backward (AdaLoRA's regulariser)."""
        fns = self._fns() if self.model is not None else []
        if not fns or self.orth_reg_weight == 0:
            return None
        total = fns[0].orthogonality()
        for fn in fns[1:]:
            total = total + fn.orthogonality()
        return total * (self.orth_reg_weight / len(fns))

    def _named_factors(self) -> dict[str, Parameter]:
        out = {}
        for (name, _, _), fn in zip(self.adapted, self._fns()):
            for attr in ("lora_A", "lora_E", "lora_B"):
                out[f"{name}.{attr}"] = getattr(fn, attr)
        return out

    def state_dict(self) -> dict:
        """The smoothed importance and uncertainty of every factor, by ``<weight>.<factor>``."""
        factors = self._named_factors()
        return {"ema_ipt": {n: to_host(self._ema_ipt[id(p)]) for n, p in factors.items() if id(p) in self._ema_ipt},
                "ema_unc": {n: to_host(self._ema_unc[id(p)]) for n, p in factors.items() if id(p) in self._ema_unc}}

    def load_state_dict(self, state: dict) -> None:
        factors = self._named_factors()
        unknown = [n for part in ("ema_ipt", "ema_unc") for n in state.get(part, {}) if n not in factors]
        if unknown:
            raise FinetuneError(f"adalora: load_state_dict: unknown factors {unknown} (adapted: {sorted(factors)})")
        for part, store in (("ema_ipt", self._ema_ipt), ("ema_unc", self._ema_unc)):
            for name, array in state.get(part, {}).items():
                p = factors[name]
                store[id(p)] = p._backend.xp.asarray(array, dtype=p.dtype)

    def _after_load(self, model: Module) -> None:
        self._sens.clear()

    def _merge(self, model: Module) -> None:
        self.final_ranks = self.ranks()
        for remove in self._removers:
            remove()
        self._reset_tracking()
        super()._merge(model)
