r"""Conflict-resolution weightings: a K x K Gram matrix and user weights -> coefficients alpha.

Every weighting here maps the Gram matrix ``G = J J^T`` of the K per-objective gradients
(``G_kl = <g_k, g_l>``) to coefficients ``alpha`` (shape [K]); the update direction is
``d = sum_k alpha_k g_k``. Working on ``G`` alone means one code path serves a full gradient, a LoRA
gradient or a sharded gradient (sum the shard Grams), and the update is one backward pass of
``sum_k alpha_k L_k``.

All weightings are :class:`torchjd.aggregation.Weighting` subclasses, so they compose with torchjd's
aggregators and its autogram engine. Names accepted by :func:`get_weighting`:

* ``weighted_sum``: ``alpha = w`` (linear scalarisation, "DPO-LW").
* ``mgda``: MGDA (Désidéri 2012; Sener & Koltun 2018) on the weighted gradients ``w_k g_k``: min-norm point ``a`` of
  their convex hull, ``alpha = w * a / <w, a>`` (sums to 1; ``w`` uniform gives torchjd's MGDA exactly).
* ``pcgrad``: PCGrad (Yu et al. 2020) on the weighted gradients ``w_k g_k``: ``alpha = w * a`` with ``a`` torchjd's
  PCGrad coefficients; without conflict ``alpha = w``.
* ``upgrad``: UPGrad (Quinton & Rey 2024) with preference vector ``w``: each ``g_k`` projected onto the dual cone of
  the gradients, averaged with weights ``w``; without conflict ``alpha = w``.
* ``cagrad``: Weighted CAGrad (Liu et al. 2021, anchor ``g_0 = sum_k w_k g_k`` instead of the mean): ``alpha = w + c
  sqrt(w^T G w) / sqrt(p^T G p) * p`` with ``p`` the dual solution.
* ``raco``: RACO's CAGrad-Clip (Chen, Li, Chen, Lin 2026, arXiv 2602.02495): the CAGrad dual solution clipped by the
  user weights, ``p~ = min(p, w)``, then the same formula with ``p~``.
* ``amopo``: AMoPO's adaptive weights (Liu et al. 2025, arXiv 2506.07165): ``alpha_k = w_k exp(a_k) / sum_j w_j
  exp(a_j)`` with ``a_k`` a Gaussian draw from the policy's token probabilities on objective k's pairs (the Gram
  matrix is not used); the preference trainer pairs it with AMoPO's reference-free, length-normalised loss.

The CAGrad dual ``min_{p in simplex} p^T G w + c ||g_0|| sqrt(p^T G p)`` is solved without a conic solver:
in closed form for K = 2 (stationary points of a quadratic in the mixing weight, plus the end points, in
float64, as RACO's reference code does) and by exact enumeration of the simplex's faces for K >= 3
(vertices, edges and interior KKT points of every face, batched per face size).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torchjd.aggregation import MGDAWeighting, PCGradWeighting, UPGradWeighting, Weighting

__all__ = [
    "AMoPOWeighting", "CAGradDualSolution", "ClippedCAGradWeighting", "UserWeightedMGDA", "UserWeightedPCGrad",
    "UserWeightedUPGrad", "WEIGHTINGS", "WeightedCAGradWeighting", "WeightedSumWeighting", "UserWeighting",
    "amopo_alpha", "amopo_objective_scores", "amopo_sequence_draws", "get_weighting", "solve_cagrad_dual",
    "validate_weights", "weights_for",
]

#: Largest K handled by the exact face enumeration of the CAGrad dual (2^K - 1 faces).
MAX_OBJECTIVES_EXACT_DUAL = 14


def validate_weights(weights: Sequence[float] | Tensor, normalize: bool = False, tolerance: float = 1e-6) -> Tensor:
    """Return the user weights as a float64 tensor on the probability simplex.

    Weights must be finite, non-negative, not all zero and sum to 1 within ``tolerance``. With
    ``normalize=True`` a non-negative vector that does not sum to 1 is divided by its sum instead of rejected.
    """
    w = torch.as_tensor(weights, dtype=torch.float64).detach().cpu().flatten()
    if w.numel() == 0:
        raise ValueError("weights are empty: give one weight per objective (K >= 1).")
    if not torch.isfinite(w).all():
        raise ValueError(f"weights must be finite, got {w.tolist()}.")
    if (w < 0).any():
        raise ValueError(f"weights must be non-negative, got {w.tolist()}.")
    total = float(w.sum())
    if total <= 0:
        raise ValueError(f"weights must not all be zero, got {w.tolist()}.")
    if abs(total - 1.0) > tolerance:
        if not normalize:
            raise ValueError(
                f"weights must sum to 1 (they are points on the simplex), got {w.tolist()} with sum {total:.6g}; "
                "divide them by their sum or ask for normalisation."
            )
        w = w / total
    return w


def weights_for(
    weights: Sequence[float] | None, names: Sequence[str], field: str = "weights", simplex: bool = True
) -> list[float]:
    """The user weights of the objectives ``names``: equal weights ``1 / K`` when none were given (``1`` each off
    the simplex), else exactly one per objective, finite, and on the simplex (:func:`validate_weights`) unless
    ``simplex`` is False. Errors name ``field``."""
    if weights is None:
        return [1.0 / len(names) if simplex else 1.0] * len(names)
    values = [float(value) for value in weights]
    if len(values) != len(names):
        raise ValueError(f"{field}: {len(values)} weights were given for {len(names)} objectives {list(names)}.")
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f"{field} must be finite, got {values}.")
    if simplex:
        try:
            validate_weights(values)
        except ValueError as error:
            raise ValueError(f"{field} must be on the simplex (non-negative, sum 1): {error}") from error
    return values


def _validate_gram(gram: Tensor, num_objectives: int) -> None:
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"the Gram matrix must be square K x K, got shape {tuple(gram.shape)}.")
    if gram.shape[0] != num_objectives:
        raise ValueError(f"the Gram matrix is {gram.shape[0]} x {gram.shape[0]} but {num_objectives} weights were given.")
    if not torch.isfinite(gram).all():
        raise ValueError("the Gram matrix has non-finite entries (a NaN or inf gradient).")


@dataclass
class CAGradDualSolution:
    """The CAGrad dual's minimiser ``p`` on the simplex and its objective value ``Phi(p)``."""

    p: np.ndarray
    value: float


def _dual_objective(p: np.ndarray, H: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    """``Phi(p) = b^T p + s sqrt(p^T H p)`` for a batch of points ``p`` [..., K]."""
    quadratic = np.einsum("...i,ij,...j->...", p, H, p)
    return p @ b + s * np.sqrt(np.clip(quadratic, 0.0, None))


def _dual_candidates_two_objectives(H: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    r"""Candidate minimisers of the closed-form K = 2 dual: ``p = (lam, 1 - lam)``, ``h(lam) = b_2 + (b_1 - b_2) lam + s sqrt(Q(lam))``.

    ``Q(lam) = q_2 lam^2 + q_1 lam + q_0`` with ``q_2 = H_11 + H_22 - 2 H_12``, ``q_1 = 2 (H_12 - H_22)``,
    ``q_0 = H_22``. Setting ``h'(lam) = 0`` and squaring gives
    ``(d^2 q_2 - s^2 q_2^2) lam^2 + (d^2 q_1 - s^2 q_1 q_2) lam + d^2 q_0 - s^2 q_1^2 / 4 = 0`` with
    ``d = b_1 - b_2``; the minimiser is the best of its roots in [0, 1] and the end points.
    """
    d = b[0] - b[1]
    q2 = H[0, 0] + H[1, 1] - 2.0 * H[0, 1]
    q1 = 2.0 * (H[0, 1] - H[1, 1])
    q0 = H[1, 1]
    a2 = d * d * q2 - s * s * q2 * q2
    a1 = d * d * q1 - s * s * q1 * q2
    a0 = d * d * q0 - s * s * q1 * q1 / 4.0
    candidates = [0.0, 1.0]
    scale = max(abs(a2), abs(a1), abs(a0), 1e-300)
    if abs(a2) > 1e-12 * scale:
        discriminant = a1 * a1 - 4.0 * a2 * a0
        if discriminant >= 0.0:
            root = math.sqrt(discriminant)
            candidates += [(-a1 + root) / (2.0 * a2), (-a1 - root) / (2.0 * a2)]
    elif abs(a1) > 1e-12 * scale:
        candidates.append(-a0 / a1)
    lams = np.array([lam for lam in candidates if 0.0 <= lam <= 1.0])
    return np.stack([lams, 1.0 - lams], axis=1)


@functools.lru_cache(maxsize=None)
def _face_masks(num_objectives: int) -> np.ndarray:
    """Indicator vectors of every face of the simplex with at least two vertices, shape [F, K]."""
    faces = [
        [1.0 if k in face else 0.0 for k in range(num_objectives)]
        for size in range(2, num_objectives + 1)
        for face in itertools.combinations(range(num_objectives), size)
    ]
    return np.array(faces)


def _face_kkt_candidates(H: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    r"""Interior KKT points of every face of the simplex with two or more vertices, in one batch.

    On a face S with ``H_SS`` invertible, stationarity ``b_S + s H_SS p / r = nu 1`` (``r = sqrt(p^T H p)``) gives
    ``p = H_SS^{-1} (nu 1 - b_S) / (nu A - B)`` where ``nu`` solves ``A nu^2 - 2 B nu + C - s^2 = 0`` with
    ``A = 1^T H_SS^{-1} 1``, ``B = 1^T H_SS^{-1} b_S``, ``C = b_S^T H_SS^{-1} b_S``, and ``nu A - B > 0``.
    Every face is embedded in a K x K matrix (``H_SS`` on S, identity elsewhere) so that one batched solve
    serves all faces; a ridge of 1e-12 trace(H) keeps singular faces solvable, and their near-zero-norm points
    (``H_SS p = 0``) come out as the limit of the KKT points. Returns the feasible candidates, shape [M, K].
    """
    masks = _face_masks(H.shape[0])
    outside = 1.0 - masks
    H_faces = masks[:, :, None] * H[None] * masks[:, None, :] + outside[:, :, None] * np.eye(H.shape[0])
    ridge = 1e-12 * max(float(np.trace(H)), 1e-300) * np.eye(H.shape[0])
    b_faces = masks * b
    solved = np.linalg.solve(H_faces + ridge, np.stack([masks, b_faces], axis=2))
    x = solved[..., 0] * masks
    y = solved[..., 1] * masks
    A = x.sum(axis=1)
    B = y.sum(axis=1)
    C = np.einsum("fi,fi->f", b_faces, y)
    discriminant = B * B - A * (C - s * s)
    valid = (discriminant >= 0.0) & (A > 0.0)
    root = np.sqrt(np.where(valid, discriminant, 0.0))
    found = []
    for sign in (1.0, -1.0):
        nu = (B + sign * root) / np.where(valid, A, 1.0)
        denominator = nu * A - B
        ok = valid & (denominator > 1e-300)
        p = (nu[:, None] * x - y) / np.where(ok, denominator, 1.0)[:, None]
        residual = (np.einsum("fij,fj->fi", H_faces, p) * denominator[:, None] - (nu[:, None] - b_faces)) * masks
        scale = 1.0 + np.abs(nu) + np.linalg.norm(b_faces, axis=1)
        ok &= (np.linalg.norm(residual, axis=1) <= 1e-7 * scale) & (p >= -1e-12).all(axis=1)
        feasible = np.clip(p[ok], 0.0, None)
        found.append(feasible / feasible.sum(axis=1, keepdims=True))
    return np.concatenate(found)


def solve_cagrad_dual(gram: Tensor | np.ndarray, weights: Tensor | np.ndarray, c: float) -> CAGradDualSolution:
    r"""Solve weighted CAGrad's dual ``min_{p in simplex} p^T G w + c sqrt(w^T G w) sqrt(p^T G p)``.

    This is CAGrad's dual (Liu et al. 2021, "Conflict-Averse Gradient Descent for Multi-task Learning", eq. 4)
    with the average gradient replaced by the user-weighted anchor ``g_0 = sum_k w_k g_k``
    (``||g_0|| = sqrt(w^T G w)``, ``<g_p, g_0> = p^T G w``). Solved in float64: K = 1 trivially; K = 2 in closed
    form; K >= 3 exactly, as the best of the vertices and of the interior KKT points of every face of the simplex
    (the objective is convex, so its minimiser is a KKT point of the face whose relative interior holds it).
    A zero-norm point (``G p = 0``) in a face's relative interior is the limit of that face's KKT points and is
    found through a tiny ridge. ``c = 0`` reduces to a linear programme (best vertex).
    """
    H = np.asarray(torch.as_tensor(gram).detach().cpu().double().numpy() if isinstance(gram, Tensor) else gram, dtype=np.float64)
    H = 0.5 * (H + H.T)
    w = np.asarray(torch.as_tensor(weights).detach().cpu().double().numpy() if isinstance(weights, Tensor) else weights, dtype=np.float64)
    K = H.shape[0]
    b = H @ w
    s = float(c) * math.sqrt(max(float(w @ H @ w), 0.0))
    if K == 1:
        p = np.ones(1)
    elif s == 0.0:
        p = np.eye(K)[int(np.argmin(b))]
    else:
        if K > MAX_OBJECTIVES_EXACT_DUAL:
            raise ValueError(
                f"the exact CAGrad dual solver handles at most {MAX_OBJECTIVES_EXACT_DUAL} objectives, got {K}."
            )
        found = _dual_candidates_two_objectives(H, b, s) if K == 2 else _face_kkt_candidates(H, b, s)
        points = np.concatenate([w[None], np.eye(K), found])
        values = _dual_objective(points, H, b, s)
        # Ties (a flat dual, e.g. aligned gradients) go to the candidate nearest w, so that alpha stays ~ w.
        tied = values <= values.min() + 1e-12 * (1.0 + abs(values.min()))
        p = points[tied][int(np.argmin(np.linalg.norm(points[tied] - w, axis=1)))]
    return CAGradDualSolution(p=p, value=float(_dual_objective(p[None], H, b, s)[0]))


class UserWeighting(Weighting):
    """Base class of weightings parameterised by user weights ``w`` on the simplex (one per objective)."""

    def __init__(self, weights: Sequence[float] | Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", validate_weights(weights), persistent=False)

    @property
    def num_objectives(self) -> int:
        return int(self.weights.numel())

    def _weights_like(self, gram: Tensor) -> Tensor:
        _validate_gram(gram, self.num_objectives)
        return self.weights.to(device=gram.device, dtype=gram.dtype)

    def extra_repr(self) -> str:
        return f"weights={[round(float(x), 6) for x in self.weights]}"


class WeightedSumWeighting(UserWeighting):
    r"""Linear scalarisation: ``alpha = w``, i.e. the gradient of ``sum_k w_k L_k`` (DPO-LW in the RACO paper)."""

    def forward(self, gram: Tensor, /) -> Tensor:
        return self._weights_like(gram).clone()


class _ScaledGradientWeighting(UserWeighting):
    """Applies an unweighted torchjd weighting to the weighted gradients ``w_k g_k``.

    The Gram of the weighted gradients is ``diag(w) G diag(w)``; coefficients ``a`` on them become ``w * a`` on the
    original gradients.
    """

    inner: Weighting

    def _coefficients_on_weighted_gradients(self, gram: Tensor) -> tuple[Tensor, Tensor]:
        w = self._weights_like(gram)
        return w, self.inner(w[:, None] * gram * w[None, :])


class UserWeightedMGDA(_ScaledGradientWeighting):
    r"""MGDA on the weighted gradients: ``a = argmin_{a in simplex} ||sum_k a_k w_k g_k||^2``,
    ``alpha = w * a / <w, a>`` (a convex combination of the gradients, like every other weighting's scale).

    Désidéri 2012, "Multiple-gradient descent algorithm"; Sener & Koltun 2018. Uniform ``w`` gives torchjd's
    ``MGDAWeighting`` (Frank-Wolfe) exactly. A zero ``w_k`` removes objective k: the min-norm point is taken over the
    objectives with ``w_k > 0`` only (a zero weighted gradient in the hull would make it the zero vector), and
    ``alpha_k = 0`` for the others.
    """

    def __init__(self, weights: Sequence[float] | Tensor, epsilon: float = 1e-3, max_iters: int = 100) -> None:
        super().__init__(weights)
        self.inner = MGDAWeighting(epsilon=epsilon, max_iters=max_iters)

    def forward(self, gram: Tensor, /) -> Tensor:
        w = self._weights_like(gram)
        kept = (w > 0).nonzero().flatten()
        w_kept = w[kept]
        a = self.inner(w_kept[:, None] * gram[kept][:, kept] * w_kept[None, :])
        combined = torch.zeros_like(w)
        combined[kept] = w_kept * a
        total = combined.sum()
        return combined / total if total > 0 else w.clone()


class UserWeightedPCGrad(_ScaledGradientWeighting):
    r"""PCGrad on the weighted gradients ``w_k g_k`` (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning").

    Each ``w_k g_k`` is projected onto the normal plane of every other gradient it conflicts with (random order),
    and the projections are summed: ``alpha = w * a`` with ``a`` torchjd's PCGrad coefficients. Without conflict
    ``alpha = w``. The random order uses torch's global generator (seed it for reproducibility).
    """

    def __init__(self, weights: Sequence[float] | Tensor) -> None:
        super().__init__(weights)
        self.inner = PCGradWeighting()

    def forward(self, gram: Tensor, /) -> Tensor:
        w, a = self._coefficients_on_weighted_gradients(gram)
        return w * a


class UserWeightedUPGrad(UserWeighting):
    r"""UPGrad (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization") with preference ``w``.

    Each ``g_k`` is projected onto the dual cone of the gradients ``{d : <g_j, d> >= 0 for all j}`` and the
    projections are averaged with weights ``w``. Without conflict ``alpha = w``.
    """

    def __init__(self, weights: Sequence[float] | Tensor) -> None:
        super().__init__(weights)
        self.inner = UPGradWeighting(pref_vector=self.weights.clone())

    def forward(self, gram: Tensor, /) -> Tensor:
        self._weights_like(gram)
        return self.inner(gram.double()).to(gram.dtype)


@dataclass
class CAGradStepStats:
    """What the last CAGrad / RACO step did, for logging: dual solution, clipped mixing weights, clip activity.

    ``clip_active`` is True when the clip changed the correction's direction (``min(p*, w)`` is not a multiple of
    ``p*``); clipping a vertex ``p*`` only rescales it, which the formula's normalisation undoes.
    """

    dual_solution: list[float] = field(default_factory=list)
    mixing_weights: list[float] = field(default_factory=list)
    clip_active: bool = False


class WeightedCAGradWeighting(UserWeighting):
    r"""Weighted CAGrad (Liu et al. 2021 with the user-weighted anchor ``g_0 = sum_k w_k g_k``).

    ``p* = argmin_{p in simplex} p^T G w + c sqrt(w^T G w) sqrt(p^T G p)`` (:func:`solve_cagrad_dual`), then
    ``alpha = w + c sqrt(w^T G w) / sqrt(p^T G p) * p``, or ``alpha = w`` when ``p^T G p = 0`` (a
    Pareto-stationary point: no correction direction exists). Uniform ``w`` matches torchjd's ``CAGradWeighting``.
    """

    clip = False

    def __init__(self, weights: Sequence[float] | Tensor, c: float = 0.4) -> None:
        super().__init__(weights)
        if not (math.isfinite(c) and c >= 0.0):
            raise ValueError(f"c must be a finite non-negative number, got {c}.")
        self.c = float(c)
        self.last_stats = CAGradStepStats()

    def _correction_weights(self, gram64: Tensor, w64: Tensor) -> Tensor:
        p = torch.from_numpy(solve_cagrad_dual(gram64, w64, self.c).p)
        self.last_stats.dual_solution = p.tolist()
        return p

    def forward(self, gram: Tensor, /) -> Tensor:
        w = self._weights_like(gram)
        gram64, w64 = gram.detach().double().cpu(), w.double().cpu()
        gram64 = 0.5 * (gram64 + gram64.T)
        p = self._correction_weights(gram64, w64)
        self.last_stats.mixing_weights = p.tolist()
        anchor_sq = float(w64 @ gram64 @ w64)
        correction_sq = float(p @ gram64 @ p)
        if correction_sq <= 1e-14 * max(float(gram64.diagonal().sum()), 1e-300) or anchor_sq <= 0.0:
            return w.clone()
        alpha = w64 + (self.c * math.sqrt(anchor_sq) / math.sqrt(correction_sq)) * p
        return alpha.to(device=gram.device, dtype=gram.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, c={self.c}"


class ClippedCAGradWeighting(WeightedCAGradWeighting):
    r"""RACO's CAGrad-Clip (Chen, Li, Chen, Lin 2026, "Reward-free Alignment for Conflicting Objectives").

    ``clip_target="mixing_weights"`` (default; Algorithm 1 and the authors' reference code): solve the weighted
    CAGrad dual for ``p*``, clip it by the user weights ``p~ = min(p*, w)`` elementwise (not renormalised, so
    ``sum p~`` may be below 1), and set ``alpha = w + c sqrt(w^T G w) / sqrt(p~^T G p~) * p~`` (``alpha = w``
    when ``p~^T G p~ = 0``). The clip keeps the correction from giving any objective more extra weight than the
    user gave it; for K = 2 the paper proves it never slows the descent of ``sum_k w_k L_k``.

    ``clip_target="gradient_norm"`` (the reading found in some write-ups): each weighted gradient is clipped to
    norm ``clip_threshold`` (lambda) before an unweighted-anchor CAGrad step,
    ``s_k = w_k min(1, lambda / (w_k sqrt(G_kk)))``, ``G' = diag(s) G diag(s)``, CAGrad on ``G'`` with anchor
    ``sum_k s_k g_k`` (weights 1 on the clipped gradients), and coefficients ``alpha_k = s_k a_k`` on the
    original gradients. ``clip=False`` gives :class:`WeightedCAGradWeighting`.
    """

    clip = True

    def __init__(
        self,
        weights: Sequence[float] | Tensor,
        c: float = 0.4,
        clip: bool = True,
        clip_target: str = "mixing_weights",
        clip_threshold: float | None = None,
    ) -> None:
        super().__init__(weights, c=c)
        if clip_target not in ("mixing_weights", "gradient_norm"):
            raise ValueError(f"clip_target must be 'mixing_weights' or 'gradient_norm', got {clip_target!r}.")
        if clip_target == "gradient_norm":
            if clip_threshold is None or not (math.isfinite(clip_threshold) and clip_threshold > 0):
                raise ValueError(
                    f"clip_target='gradient_norm' needs a positive finite clip_threshold, got {clip_threshold}."
                )
        self.clip = bool(clip)
        self.clip_target = clip_target
        self.clip_threshold = clip_threshold

    def _correction_weights(self, gram64: Tensor, w64: Tensor) -> Tensor:
        p = super()._correction_weights(gram64, w64)
        if not self.clip:
            return p
        clipped = torch.minimum(p, w64)
        # The correction only changes direction when the clip is not a uniform rescaling of p*.
        total = float(clipped.sum())
        self.last_stats.clip_active = total == 0.0 or bool((clipped / total - p).abs().max() > 1e-9)
        return clipped

    def _gradient_norm_clipped(self, gram: Tensor) -> Tensor:
        w = self._weights_like(gram)
        gram64, w64 = gram.detach().double().cpu(), w.double().cpu()
        weighted_norms = w64 * gram64.diagonal().clamp_min(0.0).sqrt()
        scale = torch.where(
            weighted_norms > self.clip_threshold, self.clip_threshold / weighted_norms.clamp_min(1e-300), 1.0
        )
        s = w64 * scale
        self.last_stats.clip_active = bool((scale < 1.0).any())
        unit_anchor = torch.ones_like(s)
        inner = WeightedCAGradWeighting(unit_anchor / unit_anchor.sum(), c=self.c)
        # CAGrad on the clipped gradients with anchor sum_k s_k g_k: uniform weights 1/K on K * s_k g_k.
        scaled = s * len(s)
        alpha_on_scaled = inner(scaled[:, None] * gram64 * scaled[None, :])
        self.last_stats.dual_solution = inner.last_stats.dual_solution
        self.last_stats.mixing_weights = inner.last_stats.mixing_weights
        return (scaled * alpha_on_scaled).to(device=gram.device, dtype=gram.dtype)

    def forward(self, gram: Tensor, /) -> Tensor:
        if self.clip and self.clip_target == "gradient_norm":
            return self._gradient_norm_clipped(gram)
        self.last_stats.clip_active = False
        return super().forward(gram)

    def extra_repr(self) -> str:
        text = f"{super().extra_repr()}, clip={self.clip}, clip_target={self.clip_target!r}"
        return text + (f", clip_threshold={self.clip_threshold}" if self.clip_target == "gradient_norm" else "")


def amopo_sequence_draws(token_probabilities: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r"""AMoPO's Gaussian draw per sequence: ``z_b = m_b + s_b eps_b`` with ``eps_b ~ N(0, 1)``, shape [B].

    ``m_b`` and ``s_b`` are the mean and the standard deviation (Bessel-corrected, as ``torch.std``; 0 for a single
    token) of the probabilities ``p_t = pi(y_t | x, y_<t)`` of sequence b's response tokens (``mask``); a sequence
    without a response token draws 0. This is the authors' ``torch.normal(mean, std)`` over the non-zero masked token
    probabilities (``trainer_multi_obj.py`` of Javkonline/AMoPO), without gradient.

    Args:
        token_probabilities: [B, T] probabilities of the tokens.
        mask: [B, T] boolean or 0/1, True on the response tokens.
        generator: the CPU random source of ``eps`` (torch's global one when None).
    """
    if token_probabilities.shape != mask.shape or token_probabilities.ndim != 2:
        raise ValueError(
            f"token_probabilities and mask must both have shape [B, T], got {tuple(token_probabilities.shape)} and "
            f"{tuple(mask.shape)}."
        )
    selected = mask.bool()
    values = token_probabilities.detach().double()
    counts = selected.sum(dim=1).double()
    means = torch.where(selected, values, 0.0).sum(dim=1) / counts.clamp_min(1.0)
    squares = torch.where(selected, (values - means[:, None]) ** 2, 0.0).sum(dim=1)
    stds = torch.where(counts > 1, (squares / (counts - 1).clamp_min(1.0)).sqrt(), 0.0)
    noise = torch.randn(values.shape[0], generator=generator, dtype=torch.float64).to(values.device)
    return torch.where(counts > 0, means + stds * noise, 0.0)


def amopo_objective_scores(draws: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    r"""Per objective k, ``sum_{i: S_ik != 0} (z_{a,i} + z_{b,i})`` and the count of those pairs, both shape [K].

    ``draws`` [2N] holds :func:`amopo_sequence_draws` of the ``y_a`` rows, then of the ``y_b`` rows; ``labels`` is the
    [N, K] label matrix. Objective k's score ``a_k`` is the sum over the count: the mean over its labelled pairs of
    its winner's and loser's draws (the authors add the two draws of each dimension's pair). Sums and counts add up
    over micro-batches and processes before the division.
    """
    num_pairs = labels.shape[0]
    if labels.ndim != 2 or draws.shape != (2 * num_pairs,):
        raise ValueError(f"draws must have shape [2N] for labels of shape [N, K], got {tuple(draws.shape)} and "
                         f"{tuple(labels.shape)}.")
    pair_draws = (draws[:num_pairs] + draws[num_pairs:]).double()
    labelled = (labels != 0).to(pair_draws.device, torch.float64)
    return pair_draws @ labelled, labelled.sum(dim=0)


def amopo_alpha(weights: Tensor, scores: Tensor) -> Tensor:
    r"""AMoPO's adaptive coefficients, tilted by the user weights: ``alpha_k = w_k exp(a_k) / sum_j w_j exp(a_j)``.

    With equal weights this is the paper's ``softmax(a)``. An objective whose score is NaN (no labelled pair)
    gets ``alpha_k = 0``; when every score is NaN, ``alpha = w``.
    """
    w = torch.as_tensor(weights, dtype=torch.float64)
    a = torch.as_tensor(scores, dtype=torch.float64).to(w.device)
    if a.shape != w.shape:
        raise ValueError(f"one score per objective: {a.numel()} scores for {w.numel()} weights.")
    present = ~torch.isnan(a) & (w > 0)
    if not present.any():
        return w.clone()
    shifted = torch.where(present, a - a[present].max(), 0.0)
    tilted = torch.where(present, w * shifted.exp(), 0.0)
    return tilted / tilted.sum()


class AMoPOWeighting(UserWeighting):
    r"""AMoPO (Liu, Ruan, Li, et al. 2025, "AMoPO: Adaptive Multi-objective Preference Optimization without Reward
    Models and Reference Models", ACL Findings, arXiv 2506.07165).

    The loss (the paper's Eq. 9 as the RACO authors' ``--mode amopo`` implements it) is
    ``L = -sum_k alpha_k mean_i log sigmoid(beta / |y_w^k| log pi(y_w^k) - beta / |y_l^k| log pi(y_l^k))`` with each
    objective's own winner and loser: reference-free and length-normalised; the preference trainer forms it from
    :func:`paretoalign.losses.preference_losses` on the reference-free average log-probability margins.

    ``adaptive=True``: before each update the trainer hands over the scores ``a_k``
    (:meth:`set_scores`, from :func:`amopo_sequence_draws` and :func:`amopo_objective_scores`) and
    ``alpha = amopo_alpha(w, a)``, the paper's adaptive weight assignment (a Gaussian over the policy's token
    probabilities, softmax over the dimensions). ``adaptive=False``: ``alpha = w``, the RACO authors' static AMoPO
    baseline (``raco_weights`` as alpha). The Gram matrix is only checked, never used. Without scores (none set
    yet) ``alpha = w``.

    Where this differs from the AMoPO authors' code (``trainer_multi_obj.py`` of Javkonline/AMoPO): they condition
    each dimension's prompt on that dimension (``x^k = f(x, d_k)``), so each objective has its own forward passes; our
    pairs share one prompt, so ``a_k`` differs between objectives only through which pairs are labelled for k and the
    Gaussian noise. Their softmax runs over every (dimension, example) row of the micro-batch; ours over the K
    objectives, ``a_k`` averaged over k's labelled pairs of the whole accumulation window and all processes (so
    every process applies the same alpha). Their SimPO target margin ``gamma`` (``simpo_gamma``) is left out, as in
    the RACO authors' baseline. ``w`` tilts the softmax so a weight sweep traces a front; equal weights give the
    paper's rule exactly.
    """

    def __init__(self, weights: Sequence[float] | Tensor, adaptive: bool = True) -> None:
        super().__init__(weights)
        self.adaptive = bool(adaptive)
        self.scores: Tensor | None = None

    def set_scores(self, scores: Tensor | None) -> None:
        """The scores ``a_k`` [K] of the next update (NaN for an objective without a labelled pair); None: none."""
        if scores is not None and scores.shape != (self.num_objectives,):
            raise ValueError(f"one score per objective: got shape {tuple(scores.shape)} for {self.num_objectives}.")
        self.scores = None if scores is None else scores.detach().double().cpu()

    def forward(self, gram: Tensor, /) -> Tensor:
        w = self._weights_like(gram)
        if not self.adaptive or self.scores is None:
            return w.clone()
        return amopo_alpha(self.weights, self.scores).to(device=gram.device, dtype=gram.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, adaptive={self.adaptive}"


WEIGHTINGS: dict[str, Callable[..., UserWeighting]] = {
    "weighted_sum": WeightedSumWeighting,
    "mgda": UserWeightedMGDA,
    "pcgrad": UserWeightedPCGrad,
    "upgrad": UserWeightedUPGrad,
    "cagrad": WeightedCAGradWeighting,
    "raco": ClippedCAGradWeighting,
    "amopo": AMoPOWeighting,
}


def get_weighting(name: str, weights: Sequence[float] | Tensor, **params) -> UserWeighting:
    """Build a weighting by name (see the module docstring's table) with user weights ``w`` and its parameters.

    >>> get_weighting("raco", [0.5, 0.5], c=0.4)
    ClippedCAGradWeighting(weights=[0.5, 0.5], c=0.4, clip=True, clip_target='mixing_weights')
    """
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {name!r}; choose one of {sorted(WEIGHTINGS)}.")
    try:
        return WEIGHTINGS[name](weights, **params)
    except TypeError as error:
        raise ValueError(f"bad parameters for weighting {name!r}: {error}") from error
