r"""Synthetic tabular DPO benchmark with an exact Pareto front.

The problem
-----------
A tabular policy over X prompts and Y responses: logits ``theta`` [X, Y], ``pi(y|x) = softmax(theta[x])_y``, and a
reference policy with logits ``theta_ref``. K objectives have true utilities ``u_k`` [X, Y]. Preferences follow
Bradley-Terry per objective, ``P_k(y1 > y2 | x) = sigmoid(u_k(x, y1) - u_k(x, y2))``. Pairs are offline: the
prompt is uniform and the ordered pair ``(y1, y2)``, ``y1 != y2``, is uniform, so every objective sees the same
pair distribution (as in RACO's data, one pair carries one label per objective).

With ``r = theta - theta_ref`` the DPO log-ratio difference of a pair is
``delta = (log pi(y1) - log pi_ref(y1)) - (log pi(y2) - log pi_ref(y2)) = r(x, y1) - r(x, y2)`` (the softmax
normalisers cancel), and objective k's expected DPO loss is

``L_k(theta) = (1 / (X Y (Y - 1))) sum_x sum_{y1 != y2} [P_k l(beta delta) + (1 - P_k) l(-beta delta)]``,
``l(z) = -log sigmoid(z)``.

Each summand is a logistic loss of a linear function of ``theta``, so every ``L_k`` is convex, and strictly convex
on each prompt's logits modulo the constant shift (which changes no probability). Its gradient and Hessian on
prompt x are ``dL/dr_a = (2 beta / N) sum_j (sigmoid(beta D_aj) - P_aj)`` and
``H_ab = (2 beta^2 / N) [delta_ab sum_j s_aj - s_ab]``, ``s_ij = sigmoid'(beta D_ij)`` for ``i != j``,
``D_ij = r_i - r_j``, ``N = X Y (Y - 1)``; ``H <= (beta^2 / (2 X (Y - 1))) I``, so every ``L_k`` and every convex
combination is ``ell``-smooth with ``ell = beta^2 / (2 X (Y - 1))``. Each objective's own minimiser is
``r = u_k / beta`` (per prompt, up to a constant) and its minimum is the mean binary entropy of ``P_k``.
``beta`` only rescales ``r``; step sizes are given in units of ``1 / ell``, so results do not depend on it
except through the absolute gradient scale (and hence ``eps``).

Conflicting utilities
---------------------
Two orthonormal directions ``e_1, e_2`` of the per-prompt-centred logit tables (Gram-Schmidt on Gaussian
tables, normalised to root-mean-square 1 per entry) span a plane; objective k's utility is
``u_k = scale (cos phi_k e_1 + sin phi_k e_2)`` with ``phi_k = angle (k / (K - 1) - 1/2)``. So the first and last
objectives' utilities meet at ``angle_degrees`` (0: identical, 90: orthogonal, 180: opposite) and the others
are spread evenly between them; for K = 2 the angle is the angle between the two utilities.

The true front
--------------
The losses are convex, so every Pareto-optimal point minimises ``sum_k lambda_k L_k`` for some ``lambda`` in
the simplex. :func:`solve_weighted_problems` solves these problems by damped Newton in float64, prompt by prompt
(the problem separates over prompts), to a gradient norm below ``1e-12``, on the lattice
``simplex_grid(K, front_divisions)``. The weighted problem only needs ``P_lambda = sum_k lambda_k P_k``.

What the benchmark measures
---------------------------
Each weighting runs gradient descent from ``theta_ref`` with the fixed step ``eta = step_size / ell``,
``theta <- theta - eta sum_k alpha_k g_k``, ``alpha = weighting(G)``, ``G = J J^T`` of the exact gradients (or
of the sampled-pair gradients when ``pairs_per_step`` is set; criticality and losses are always measured exactly).
Per weighting and user weight vector w it records:

* ``steps_to_eps``: the first step t with ``sqrt(pareto_criticality(G(theta_t))) < eps`` (the min-norm point of
  the convex hull of the exact gradients), or None when not reached within ``max_steps``;
* the final loss vector ``L(theta_T)`` after ``T = max_steps`` steps and the weighted-loss gap
  ``L_w(theta_T) - min L_w`` (RACO's Theorem 3.1 says RACO, like the weighted sum, drives ``L_w`` to its minimum);
* ``preference_angle``: the angle in degrees between the loss reduction ``L(theta_ref) - L(theta_T)`` and w.
  At ``theta_ref`` every loss equals ``log 2``, so the ray ``log 2 - t w`` is the "improve in proportion to w"
  direction; 0 degrees means the objectives improved exactly in the requested ratio, above 90 means the step
  made the weighted combination of losses worse. The exact weighted-sum optimum is reported for comparison:
  its angle is not 0 either, because the front is curved.

Per weighting, the final loss vectors over all w give ``hypervolume(points, reference, maximize=False)`` as a
fraction of the true front's hypervolume, with the reference point
``nadir + 0.1 (nadir - ideal)`` of the true front (nadir and ideal: the per-objective worst and best front values).
A finite weight set cannot reach fraction 1: the row ``exact optimum`` (the weighted-sum minimisers at the same w)
is the ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from paretoalign.losses import preference_losses
from paretoalign.pareto import hypervolume, pareto_criticality, simplex_grid
from paretoalign.weighting import ClippedCAGradWeighting, UserWeighting, get_weighting

__all__ = [
    "EXACT_OPTIMUM_LABEL", "WEIGHTING_VARIANTS", "DescentResult", "SyntheticConfig", "TabularProblem",
    "WeightedOptimum", "bradley_terry_probabilities", "clipping_study", "clipping_verdict", "conflicting_utilities",
    "descend", "expected_loss_gradients", "expected_losses", "hypervolume_reference", "make_problem", "make_weighting",
    "preference_angle_degrees", "run_benchmark", "sample_preference_pairs", "sampled_losses", "single_threaded",
    "smoothness_constant", "solve_weighted_problems",
]

#: Benchmark label -> (registry name, parameters) for :func:`paretoalign.weighting.get_weighting`.
WEIGHTING_VARIANTS: dict[str, tuple[str, dict]] = {
    "weighted_sum": ("weighted_sum", {}),
    "mgda": ("mgda", {}),
    "pcgrad": ("pcgrad", {}),
    "cagrad": ("cagrad", {}),
    "upgrad": ("upgrad", {}),
    "raco": ("raco", {}),
    "raco(clip=False)": ("raco", {"clip": False}),
    "raco(clip_target=gradient_norm)": ("raco", {"clip_target": "gradient_norm"}),
}

#: ``weighting`` of the :func:`run_benchmark` record of the exact weighted-sum minimisers.
EXACT_OPTIMUM_LABEL = "exact optimum"


@dataclass
class SyntheticConfig:
    """Settings of the synthetic tabular benchmark (see the module docstring for the construction).

    ``step_size`` is in units of ``1 / ell`` (``ell = beta^2 / (2 X (Y - 1))``, the smoothness constant of every
    loss); ``eps`` bounds ``sqrt(pareto_criticality(G))`` in absolute gradient units; ``weight_divisions`` gives the
    user weights ``simplex_grid(K, weight_divisions)`` the weightings run with and ``front_divisions`` the denser
    lattice of the true front; ``pairs_per_step=None`` uses exact expected gradients; ``gradient_clip_fraction``
    sets the threshold of ``raco(clip_target=gradient_norm)`` as this fraction of ``max_k ||g_k(theta_ref)||``.
    """

    num_prompts: int = 8
    num_responses: int = 6
    num_objectives: int = 2
    angle_degrees: float = 120.0
    utility_scale: float = 1.0
    beta: float = 0.2
    step_size: float = 0.5
    max_steps: int = 400
    eps: float = 1e-6
    c: float = 0.4
    gradient_clip_fraction: float = 0.5
    seed: int = 0
    weightings: tuple[str, ...] = tuple(WEIGHTING_VARIANTS)
    weight_divisions: int = 10
    front_divisions: int = 200
    pairs_per_step: int | None = None


@dataclass
class TabularProblem:
    """Reference logits ``theta_ref`` [X, Y], utilities ``u`` [K, X, Y], DPO ``beta`` and the Bradley-Terry
    preference probabilities ``P[k, x, i, j] = sigmoid(u_k(x, i) - u_k(x, j))``."""

    theta_ref: Tensor
    utilities: Tensor
    beta: float
    preferences: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.preferences = bradley_terry_probabilities(self.utilities)

    @property
    def num_objectives(self) -> int:
        return self.utilities.shape[0]

    @property
    def num_pairs(self) -> int:
        """``N = X Y (Y - 1)``, the number of (prompt, ordered pair) combinations."""
        _, num_prompts, num_responses = self.utilities.shape
        return num_prompts * num_responses * (num_responses - 1)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one thread inside the block: every tensor here is tiny, and extra threads cost more in
    start-up and contention than they save."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def bradley_terry_probabilities(utilities: Tensor) -> Tensor:
    """``P[k, x, i, j] = sigmoid(u[k, x, i] - u[k, x, j])``, shape [K, X, Y, Y]."""
    return torch.sigmoid(utilities[..., :, None] - utilities[..., None, :])


def _centred_orthonormal_directions(num_prompts: int, num_responses: int, generator: torch.Generator) -> Tensor:
    """Two orthogonal [X, Y] tables, each centred per prompt and with root-mean-square entry 1."""
    tables = torch.randn(2, num_prompts, num_responses, generator=generator, dtype=torch.float64)
    tables = tables - tables.mean(dim=-1, keepdim=True)
    first, second = tables.reshape(2, -1)
    first = first / first.norm()
    second = second - (second @ first) * first
    second = second / second.norm()
    return torch.stack([first, second]).reshape(2, num_prompts, num_responses) * math.sqrt(num_prompts * num_responses)


def conflicting_utilities(
    num_prompts: int,
    num_responses: int,
    num_objectives: int,
    angle_degrees: float,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``u_k = scale (cos phi_k e_1 + sin phi_k e_2)``, ``phi_k = angle (k / (K - 1) - 1/2)``, shape [K, X, Y].

    ``e_1, e_2`` are orthonormal per-prompt-centred directions (root-mean-square entry 1), so
    ``angle(u_1, u_K) = angle_degrees`` and ``u_k`` has root-mean-square entry ``scale``.
    """
    if num_objectives < 2:
        raise ValueError(f"the benchmark needs at least 2 objectives, got {num_objectives}.")
    if num_responses < 2:
        raise ValueError(f"a preference pair needs at least 2 responses per prompt, got {num_responses}.")
    if not 0.0 <= angle_degrees <= 180.0:
        raise ValueError(f"angle_degrees must lie in [0, 180], got {angle_degrees}.")
    generator = generator or torch.Generator().manual_seed(0)
    first, second = _centred_orthonormal_directions(num_prompts, num_responses, generator)
    fractions = torch.arange(num_objectives, dtype=torch.float64) / (num_objectives - 1) - 0.5
    phis = math.radians(angle_degrees) * fractions
    return scale * (torch.cos(phis)[:, None, None] * first + torch.sin(phis)[:, None, None] * second)


def make_problem(config: SyntheticConfig) -> TabularProblem:
    """The benchmark instance of ``config``: Gaussian reference logits and :func:`conflicting_utilities`."""
    generator = torch.Generator().manual_seed(config.seed)
    theta_ref = torch.randn(config.num_prompts, config.num_responses, generator=generator, dtype=torch.float64)
    utilities = conflicting_utilities(
        config.num_prompts,
        config.num_responses,
        config.num_objectives,
        config.angle_degrees,
        config.utility_scale,
        generator,
    )
    return TabularProblem(theta_ref=theta_ref, utilities=utilities, beta=config.beta)


def smoothness_constant(problem: TabularProblem) -> float:
    """``ell = beta^2 / (2 X (Y - 1))``: an upper bound on the Hessian of every ``L_k`` and of their convex combinations."""
    _, num_prompts, num_responses = problem.utilities.shape
    return problem.beta**2 / (2.0 * num_prompts * (num_responses - 1))


def _off_diagonal(num_responses: int) -> Tensor:
    return 1.0 - torch.eye(num_responses, dtype=torch.float64)


def _pair_margins(theta: Tensor, problem: TabularProblem) -> Tensor:
    """``z[..., x, i, j] = beta (r(x, i) - r(x, j))`` with ``r = theta - theta_ref``."""
    r = theta - problem.theta_ref
    return problem.beta * (r[..., :, None] - r[..., None, :])


def _per_prompt_losses(theta: Tensor, preferences: Tensor, problem: TabularProblem) -> Tensor:
    """Each prompt's share ``(1/N) sum_{i != j} [P l(z) + (1 - P) l(-z)]`` of the mixture loss, shape [..., X]."""
    z = _pair_margins(theta, problem)
    per_pair = preferences * F.softplus(-z) + (1.0 - preferences) * F.softplus(z)
    return (per_pair * _off_diagonal(z.shape[-1])).sum(dim=(-2, -1)) / problem.num_pairs


def _mixture_losses(theta: Tensor, preferences: Tensor, problem: TabularProblem) -> Tensor:
    """``(1/N) sum_{x, i != j} [P l(z) + (1 - P) l(-z)]`` for preferences [..., X, Y, Y], shape [...]."""
    return _per_prompt_losses(theta, preferences, problem).sum(dim=-1)


def expected_losses(theta: Tensor, problem: TabularProblem) -> Tensor:
    """Exact expected DPO losses ``L_k(theta)``, shape [K], by enumerating every prompt and ordered pair (float64)."""
    return _mixture_losses(theta, problem.preferences, problem)


def _mixture_gradients(theta: Tensor, preferences: Tensor, problem: TabularProblem) -> Tensor:
    """``dL/dtheta[x, a] = (2 beta / N) sum_{j != a} (sigmoid(z_aj) - P_aj)``, shape [..., X, Y]."""
    z = _pair_margins(theta, problem)
    residual = (torch.sigmoid(z) - preferences) * _off_diagonal(z.shape[-1])
    return (2.0 * problem.beta / problem.num_pairs) * residual.sum(dim=-1)


def expected_loss_gradients(theta: Tensor, problem: TabularProblem) -> Tensor:
    """Exact gradients ``g_k = dL_k/dtheta``, shape [K, X, Y]."""
    return _mixture_gradients(theta, problem.preferences, problem)


def _mixture_hessian_blocks(theta: Tensor, problem: TabularProblem) -> Tensor:
    """Per-prompt Hessians ``H_ab = (2 beta^2 / N) [delta_ab sum_j s_aj - s_ab]``, ``s = sigmoid'(z)`` off the
    diagonal; shape [..., X, Y, Y]. They do not depend on the preferences."""
    z = _pair_margins(theta, problem)
    curvature = torch.sigmoid(z) * torch.sigmoid(-z) * _off_diagonal(z.shape[-1])
    laplacian = torch.diag_embed(curvature.sum(dim=-1)) - curvature
    return (2.0 * problem.beta**2 / problem.num_pairs) * laplacian


def sample_preference_pairs(
    problem: TabularProblem, num_pairs: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Draw ``num_pairs`` (prompt, y1, y2) uniformly with ``y1 != y2`` and one Bradley-Terry label per objective.

    Returns ``(prompts, first, second, labels)``; ``labels[n, k] = +1`` when ``y1`` wins for objective k
    (probability ``P_k(y1 > y2 | x)``), else -1.
    """
    _, num_prompts, num_responses = problem.utilities.shape
    prompts = torch.randint(num_prompts, (num_pairs,), generator=generator)
    first = torch.randint(num_responses, (num_pairs,), generator=generator)
    offset = torch.randint(1, num_responses, (num_pairs,), generator=generator)
    second = (first + offset) % num_responses
    win_probability = problem.preferences[:, prompts, first, second].T
    wins = torch.rand(win_probability.shape, generator=generator, dtype=torch.float64) < win_probability
    labels = torch.where(wins, 1, -1)
    return prompts, first, second, labels


def sampled_losses(theta: Tensor, problem: TabularProblem, pairs: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
    """Stochastic DPO losses on sampled pairs through :func:`paretoalign.losses.preference_losses`, shape [K].

    ``delta_n = r(x_n, y1_n) - r(x_n, y2_n)``; the mean over pairs is an unbiased estimate of ``L_k(theta)``.
    """
    prompts, first, second, labels = pairs
    r = theta - problem.theta_ref
    logratio_diff = r[prompts, first] - r[prompts, second]
    return preference_losses(logratio_diff, labels, problem.beta, "sigmoid")


@dataclass
class WeightedOptimum:
    """Minimisers of ``sum_k lambda_k L_k`` for each row of ``weights`` [M, K]: logits [M, X, Y], losses [M, K],
    gradient norms of the weighted objective [M] and the Newton iterations used."""

    weights: Tensor
    thetas: Tensor
    losses: Tensor
    gradient_norms: Tensor
    iterations: int


@single_threaded()
def solve_weighted_problems(
    problem: TabularProblem,
    weights: Tensor | np.ndarray,
    tolerance: float = 1e-12,
    max_iterations: int = 100,
) -> WeightedOptimum:
    """Solve ``min_theta sum_k lambda_k L_k(theta)`` for every row ``lambda`` of ``weights`` [M, K] by damped Newton.

    The objective is ``(1/N) sum_x sum_{i != j} [Pbar l(z) + (1 - Pbar) l(-z)]`` with ``Pbar = sum_k lambda_k P_k``;
    it separates over prompts, so each prompt's Y logits take their own Newton step
    ``s = (H + (tr H / Y) 1 1^T / Y)^{-1} g`` (the added term fixes the free constant shift; ``g`` is orthogonal to
    ``1``, so ``s`` is the minimum-norm Newton step) with Armijo backtracking, until the weighted gradient norm is
    below ``tolerance`` for every row. A step whose predicted decrease ``g^T s`` is below the rounding level of the
    loss is taken in full (Armijo cannot see it, and Newton converges quadratically there). All in float64, batched
    over the rows.
    """
    lambdas = torch.as_tensor(weights, dtype=torch.float64)
    preferences = torch.einsum("mk,kxij->mxij", lambdas, problem.preferences)
    num_responses = problem.utilities.shape[-1]
    ones_projector = torch.full((num_responses, num_responses), 1.0 / num_responses, dtype=torch.float64)
    theta = problem.theta_ref.expand(len(lambdas), *problem.theta_ref.shape).clone()

    iteration = 0
    for iteration in range(1, max_iterations + 1):
        gradient = _mixture_gradients(theta, preferences, problem)
        if bool((gradient.flatten(1).norm(dim=1) < tolerance).all()):
            break
        hessian = _mixture_hessian_blocks(theta, problem)
        trace = hessian.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
        step = torch.linalg.solve(hessian + trace / num_responses * ones_projector, gradient[..., None])[..., 0]
        current = _per_prompt_losses(theta, preferences, problem)
        decrease = (gradient * step).sum(-1)
        scale = torch.ones_like(current)
        for _ in range(40):
            candidate = theta - scale[..., None] * step
            sufficient = _per_prompt_losses(candidate, preferences, problem) <= current - 1e-4 * scale * decrease
            accepted = sufficient | (decrease <= 1e-13 * current.abs())
            if bool(accepted.all()):
                break
            scale = torch.where(accepted, scale, 0.5 * scale)
        theta = theta - scale[..., None] * step
    gradient = _mixture_gradients(theta, preferences, problem)
    losses = expected_losses(theta[:, None], problem)
    return WeightedOptimum(
        weights=lambdas,
        thetas=theta,
        losses=losses,
        gradient_norms=gradient.flatten(1).norm(dim=1),
        iterations=iteration,
    )


def hypervolume_reference(front_losses: Tensor | np.ndarray) -> np.ndarray:
    """The hypervolume reference point ``nadir + 0.1 (nadir - ideal)`` of a front of losses [M, K] (minimised)."""
    losses = np.asarray(front_losses, dtype=np.float64)
    nadir, ideal = losses.max(axis=0), losses.min(axis=0)
    return nadir + 0.1 * (nadir - ideal)


def preference_angle_degrees(start_losses: Sequence[float], losses: Sequence[float], weights: Sequence[float]) -> float:
    """Angle in degrees between the loss reduction ``start - losses`` and the weights w (NaN for a zero reduction)."""
    reduction = np.asarray(start_losses, dtype=np.float64) - np.asarray(losses, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    norms = np.linalg.norm(reduction) * np.linalg.norm(w)
    if norms == 0.0:
        return float("nan")
    return math.degrees(math.acos(float(np.clip(reduction @ w / norms, -1.0, 1.0))))


def make_weighting(label: str, weights: Sequence[float], c: float, clip_threshold: float) -> UserWeighting:
    """The weighting of a :data:`WEIGHTING_VARIANTS` label; CAGrad and RACO get ``c``, gradient-norm clipping
    gets ``clip_threshold``."""
    if label not in WEIGHTING_VARIANTS:
        raise ValueError(f"unknown weighting {label!r}; choose from {list(WEIGHTING_VARIANTS)}.")
    name, params = WEIGHTING_VARIANTS[label]
    params = dict(params)
    if name in ("cagrad", "raco"):
        params["c"] = c
    if params.get("clip_target") == "gradient_norm":
        params["clip_threshold"] = clip_threshold
    return get_weighting(name, weights, **params)


def _gram(gradients: Tensor) -> Tensor:
    """``G_kl = <g_k, g_l>`` for gradients [K, P], as a sum of elementwise products: for a K x P this small a BLAS
    call costs far more in thread start-up than in arithmetic."""
    return (gradients[:, None, :] * gradients[None, :, :]).sum(dim=-1)


@dataclass
class DescentResult:
    """One gradient-descent run: final logits and losses, the first step with
    ``sqrt(pareto_criticality(G)) < eps`` (None if never), the weighted loss ``L_w(theta_t)`` for t = 0..T and the
    number of steps on which RACO's clip changed the correction's direction."""

    theta: Tensor
    losses: Tensor
    steps_to_eps: int | None
    weighted_losses: Tensor
    clip_active_steps: int


@single_threaded()
def descend(
    problem: TabularProblem,
    weighting: UserWeighting,
    weights: Sequence[float],
    step_size: float,
    max_steps: int,
    eps: float,
    pairs_per_step: int | None = None,
    generator: torch.Generator | None = None,
) -> DescentResult:
    """``theta_{t+1} = theta_t - step_size sum_k alpha_k g_k``, ``alpha = weighting(G)``, from ``theta_ref``.

    ``g_k`` are the exact gradients, or with ``pairs_per_step`` the gradients of :func:`sampled_losses` on fresh pairs
    each step. Criticality ``sqrt(pareto_criticality(G))`` and ``L_w = sum_k w_k L_k`` always use the exact values.
    """
    w = torch.as_tensor(weights, dtype=torch.float64)
    generator = generator or torch.Generator().manual_seed(0)
    theta = problem.theta_ref.clone()
    steps_to_eps = None
    clip_active_steps = 0
    weighted_losses = [float(w @ expected_losses(theta, problem))]
    for step in range(max_steps):
        gradients = expected_loss_gradients(theta, problem).flatten(1)
        gram = _gram(gradients)
        if steps_to_eps is None and math.sqrt(pareto_criticality(gram)) < eps:
            steps_to_eps = step
        if pairs_per_step is not None:
            gradients = _sampled_gradients(theta, problem, pairs_per_step, generator).flatten(1)
            gram = _gram(gradients)
        alpha = weighting(gram)
        if isinstance(weighting, ClippedCAGradWeighting) and weighting.last_stats.clip_active:
            clip_active_steps += 1
        theta = theta - step_size * (alpha[:, None] * gradients).sum(dim=0).reshape(theta.shape)
        weighted_losses.append(float(w @ expected_losses(theta, problem)))
    if steps_to_eps is None:
        gradients = expected_loss_gradients(theta, problem).flatten(1)
        if math.sqrt(pareto_criticality(_gram(gradients))) < eps:
            steps_to_eps = max_steps
    return DescentResult(
        theta=theta,
        losses=expected_losses(theta, problem),
        steps_to_eps=steps_to_eps,
        weighted_losses=torch.tensor(weighted_losses, dtype=torch.float64),
        clip_active_steps=clip_active_steps,
    )


def _sampled_gradients(theta: Tensor, problem: TabularProblem, num_pairs: int, generator: torch.Generator) -> Tensor:
    """Gradients [K, X, Y] of :func:`sampled_losses` on ``num_pairs`` freshly drawn pairs."""
    pairs = sample_preference_pairs(problem, num_pairs, generator)
    parameters = theta.detach().requires_grad_(True)
    losses = sampled_losses(parameters, problem, pairs)
    return torch.stack([torch.autograd.grad(loss, parameters, retain_graph=True)[0] for loss in losses])


def _gradient_clip_threshold(problem: TabularProblem, fraction: float) -> float:
    """``fraction * max_k ||g_k(theta_ref)||``, the threshold of RACO's gradient-norm clipping variant."""
    return fraction * float(expected_loss_gradients(problem.theta_ref, problem).flatten(1).norm(dim=1).max())


def _front_summary(problem: TabularProblem, front_divisions: int) -> tuple[WeightedOptimum, np.ndarray, float]:
    """The true front on ``simplex_grid(K, front_divisions)``, its hypervolume reference point and hypervolume."""
    front = solve_weighted_problems(problem, simplex_grid(problem.num_objectives, front_divisions))
    reference = hypervolume_reference(front.losses)
    return front, reference, hypervolume(front.losses.numpy(), reference, maximize=False)


@single_threaded()
def run_benchmark(config: SyntheticConfig) -> list[dict]:
    """Run every weighting of ``config`` on every user weight vector; one record per weighting.

    Each record holds ``weighting``, ``hypervolume_fraction`` (of the final loss vectors, relative to the true
    front), ``reached_eps`` (runs that reached eps-Pareto-criticality), ``mean_steps_to_eps`` (over those runs),
    ``mean_weighted_loss_gap`` (``L_w(theta_T) - min L_w``), ``mean_preference_angle`` (degrees) and ``runs``
    (per-w details). The first record, ``exact optimum``, is the weighted-sum minimisers at the same w.
    """
    problem = make_problem(config)
    front, reference, front_hypervolume = _front_summary(problem, config.front_divisions)
    user_weights = simplex_grid(config.num_objectives, config.weight_divisions)
    optima = solve_weighted_problems(problem, user_weights)
    start_losses = expected_losses(problem.theta_ref, problem).tolist()
    step = config.step_size / smoothness_constant(problem)
    clip_threshold = _gradient_clip_threshold(problem, config.gradient_clip_fraction)
    context = {
        "num_objectives": config.num_objectives,
        "angle_degrees": config.angle_degrees,
        "front_hypervolume": front_hypervolume,
        "reference_point": reference.tolist(),
        "front_max_gradient_norm": float(front.gradient_norms.max()),
    }

    def summarise(label: str, runs: list[dict]) -> dict:
        points = np.array([run["losses"] for run in runs])
        reached = [run["steps_to_eps"] for run in runs if run["steps_to_eps"] is not None]
        return {
            "weighting": label,
            **context,
            "hypervolume_fraction": hypervolume(points, reference, maximize=False) / front_hypervolume,
            "reached_eps": len(reached),
            "num_runs": len(runs),
            "mean_steps_to_eps": float(np.mean(reached)) if reached else None,
            "mean_weighted_loss_gap": float(np.mean([run["weighted_loss_gap"] for run in runs])),
            "mean_preference_angle": float(np.nanmean([run["preference_angle"] for run in runs])),
            "runs": runs,
        }

    optimum_runs = [
        {
            "weights": w.tolist(),
            "losses": losses.tolist(),
            "steps_to_eps": None,
            "weighted_loss_gap": 0.0,
            "preference_angle": preference_angle_degrees(start_losses, losses.tolist(), w),
        }
        for w, losses in zip(user_weights, optima.losses)
    ]
    records = [summarise(EXACT_OPTIMUM_LABEL, optimum_runs)]
    for label in config.weightings:
        runs = []
        for index, w in enumerate(user_weights):
            weighting = make_weighting(label, w, config.c, clip_threshold)
            generator = torch.Generator().manual_seed(config.seed + index)
            # PCGrad's random projection order draws from torch's global generator: seed it, then restore it.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                result = descend(
                    problem, weighting, w, step, config.max_steps, config.eps, config.pairs_per_step, generator
                )
            minimum = float(torch.as_tensor(w) @ optima.losses[index])
            runs.append(
                {
                    "weights": w.tolist(),
                    "losses": result.losses.tolist(),
                    "steps_to_eps": result.steps_to_eps,
                    "weighted_loss_gap": float(result.weighted_losses[-1]) - minimum,
                    "preference_angle": preference_angle_degrees(start_losses, result.losses.tolist(), w),
                }
            )
        records.append(summarise(label, runs))
    return records


def _steps_below(values: Tensor, threshold: float) -> int | None:
    """First index t with ``values[t] < threshold``, or None."""
    below = torch.nonzero(values < threshold)
    return int(below[0, 0]) if len(below) else None


@single_threaded()
def clipping_study(
    config: SyntheticConfig,
    angles: Sequence[float] = (30.0, 60.0, 90.0, 120.0, 150.0),
    cs: Sequence[float] = (0.25, 0.4, 0.8),
    weight_vectors: Sequence[Sequence[float]] = ((0.5, 0.5), (0.8, 0.2), (0.2, 0.8)),
    checkpoints: Sequence[int] = (10, 25),
    gap_tolerance: float = 1e-6,
) -> list[dict]:
    """RACO with and without the clip (K = 2) on every angle x c x w; one record per combination.

    For ``clip`` and ``no_clip`` a record gives the weighted-loss gap ``L_w(theta_t) - min L_w`` after each
    checkpoint t (``gap_t``), the steps until the gap falls below ``gap_tolerance`` (``steps_to_gap``) and until
    ``sqrt(pareto_criticality(G)) < eps`` (``steps_to_eps``; None: not within ``max_steps``), and for the clipped
    run the number of steps on which the clip changed the correction's direction (``clip_active_steps``).
    Theorem 3.2 of the RACO paper bounds the per-step decrease of ``L_w`` and predicts clipping never slows it.
    """
    records = []
    for angle in angles:
        problem = make_problem(
            SyntheticConfig(**{**asdict(config), "num_objectives": 2, "angle_degrees": angle, "weightings": ()})
        )
        step = config.step_size / smoothness_constant(problem)
        optima = solve_weighted_problems(problem, torch.tensor(weight_vectors, dtype=torch.float64))
        for c in cs:
            for w, optimum_losses in zip(weight_vectors, optima.losses):
                minimum = float(torch.as_tensor(w, dtype=torch.float64) @ optimum_losses)
                record = {"angle_degrees": angle, "c": c, "weights": list(w)}
                for clip in (True, False):
                    weighting = get_weighting("raco", w, c=c, clip=clip)
                    result = descend(problem, weighting, w, step, config.max_steps, config.eps)
                    gaps = result.weighted_losses - minimum
                    key = "clip" if clip else "no_clip"
                    for checkpoint in checkpoints:
                        record[f"{key}_gap_{checkpoint}"] = float(gaps[checkpoint])
                    record[f"{key}_steps_to_gap"] = _steps_below(gaps, gap_tolerance)
                    record[f"{key}_steps_to_eps"] = result.steps_to_eps
                    if clip:
                        record["clip_active_steps"] = result.clip_active_steps
                records.append(record)
    return records


def clipping_verdict(records: list[dict]) -> dict[str, int]:
    """Counts over :func:`clipping_study` records of clip faster / equal / slower in steps to the gap tolerance.

    A run that never reaches the tolerance counts as slower than any run that does.
    """

    def steps(value: int | None) -> float:
        return math.inf if value is None else value

    counts = {"faster": 0, "equal": 0, "slower": 0}
    for record in records:
        clip, no_clip = steps(record["clip_steps_to_gap"]), steps(record["no_clip_steps_to_gap"])
        counts["faster" if clip < no_clip else "slower" if clip > no_clip else "equal"] += 1
    return counts

