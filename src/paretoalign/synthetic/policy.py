r"""A noisy, non-convex synthetic benchmark with an exact evaluation: a small neural policy trained by
multi-objective DPO on sampled preference pairs.

The model
---------
P prompts with fixed Gaussian features ``x_p`` [d] and R responses. The policy is a one-hidden-layer MLP
``f_phi(x) = tanh(x W_1 + b_1) W_2 + b_2`` (logits [R]), ``pi_phi(r | p) = softmax(f_phi(x_p))_r``; the reference
policy is the initial MLP ``phi_ref``. Its hidden width H is below P (8 < 16 by default), so the policy cannot
represent every logit table: the objectives compete for capacity, and the losses are non-convex in ``phi``.

Objectives
----------
K utility tables ``U_k`` [P, R] from :func:`paretoalign.synthetic.tabular.conflicting_utilities`:
``U_k = cos(phi_k) A + sin(phi_k) B``, A and B orthonormal per-prompt-centred random tables (root-mean-square entry
1), ``phi_k = angle (k / (K - 1) - 1/2)``; the first and last objectives' utilities meet at ``angle_degrees``, the
others lie evenly between them. Preferences are Bradley-Terry, ``P_k(r_1 > r_2 | p) = sigmoid(U_k[p, r_1] -
U_k[p, r_2])``. With the logit table ``theta = f_phi(X)`` [P, R], objective k's DPO loss (Rafailov et al. 2023) on
uniformly drawn pairs is the tabular one (:func:`paretoalign.synthetic.tabular.expected_losses`) of those logits:

``L_k(phi) = (1 / (P R (R - 1))) sum_p sum_{r_1 != r_2} [P_k l(beta delta) + (1 - P_k) l(-beta delta)]``,
``delta = (f_phi - f_ref)(x_p)_{r_1} - (f_phi - f_ref)(x_p)_{r_2}``, ``l(z) = -log sigmoid(z)``

(the log-softmax normalisers cancel in ``delta``): convex in ``theta``, non-convex in ``phi``. At ``phi_ref`` every
``L_k = log 2``.

Training: noise and gradient-scale imbalance
--------------------------------------------
Each step draws ``batch_size`` pairs: the prompt uniform, the ordered pair ``(r_1, r_2)`` uniform with
``r_1 != r_2`` (offline pairs, not drawn from the current policy: the minibatch loss is then an unbiased estimate of
the fixed ``L_k`` above, and the reference front below is the front of one fixed problem), and one Bradley-Terry
label per objective. The minibatch DPO losses (:func:`paretoalign.synthetic.tabular.sampled_losses`) are multiplied
by the loss scales ``s_1 = scale_ratio``, ``s_k = 1`` for k > 1, so objective 1's gradient is ``scale_ratio`` times
larger than it would be; :class:`paretoalign.engine.ObjectiveGradients` (exact mode) combines the K gradients with
the weighting, and Adam (or SGD) takes a step, its learning rate decayed to 0 on a cosine over the run. Every run
starts at ``phi_ref``. Pairs do not depend on the policy, so every weighting sees the same minibatches and labels at
a given seed and weight vector (common random numbers).

The scales stand for how the losses are measured (the units of a loss or a reward), not for what the user wants:
the user weights w refer to the unscaled ``L_k``, and every measurement is of the unscaled losses. A weighting that
follows the raw gradients is pulled towards objective 1: the failure that conflict-averse methods are said to avoid.
(Scaling ``U_k`` instead would also sharpen objective k's preferences and move its optimum, and the gradient ratio
would not be the scale ratio.)

Exact evaluation
----------------
``L_k(phi)`` is computed over the whole table (every prompt and ordered pair, float64), with no sampling. It is the
expected DPO loss, not the expected utility ``E_pi[U_k]``: the DPO loss is what training estimates, and its
single-objective minimiser is the KL-regularised optimum ``pi ∝ pi_ref exp(U_k / beta)``, not the utility maximiser,
so the front of the trained quantity is the one a method can be held to.

The reference front: for every lambda of ``simplex_grid(K, front_divisions)`` and every user weight vector,
``front_restarts`` full-batch Adam runs of ``front_steps`` steps (learning rate decayed to 0 on a cosine) on the exact
``sum_k lambda_k L_k``, restart 0 from ``phi_ref`` and the others from fresh initialisations, all batched in one
tensor; the restart with the lowest weighted loss is kept. ``min L_w`` at a user weight w is the lowest ``w . L``
over the kept points: an upper bound on the true minimum (the problem is non-convex), so a trained run may land
below it (a negative gap). The hypervolume reference point is ``nadir + 0.1 (nadir - ideal)`` of the reference
front (:func:`paretoalign.synthetic.tabular.hypervolume_reference`).

Metrics
-------
Per weighting, condition and seed, over the user weights (the rows of ``simplex_grid(K, weight_divisions)`` without
a zero: at a zero weight an objective is dropped, not traded), after ``steps`` steps: the hypervolume (losses
minimised) of the final loss vectors as a fraction of the reference front's; the mean
weighted-loss gap ``L_w(phi_T) - min L_w``, ``L_w = sum_k w_k L_k``; the mean preference angle between the loss
reduction ``log 2 - L(phi_T)`` and w (:func:`paretoalign.synthetic.tabular.preference_angle_degrees`); and whether an
objective the user weighted (``w_k > 0``) ends above ``log 2``, where it started ("worse"). Over the seeds (each seed
is a new instance and new minibatches): the mean and the sample standard deviation of the first two, the mean angle
and the share of runs that end worse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from paretoalign.config import field_help
from paretoalign.engine import ObjectiveGradients
from paretoalign.pareto import hypervolume, simplex_grid
from paretoalign.synthetic.tabular import (
    WEIGHTING_VARIANTS,
    TabularProblem,
    conflicting_utilities,
    expected_losses,
    hypervolume_reference,
    make_weighting,
    preference_angle_degrees,
    sample_preference_pairs,
    sampled_losses,
    single_threaded,
)

__all__ = [
    "POLICY_WEIGHTINGS", "REFERENCE_LABEL", "PolicyBenchmarkConfig", "PolicyParameters", "PolicyProblem",
    "ReferenceFront", "format_policy_tables", "initial_parameters", "loss_scales", "make_policy_problem",
    "policy_benchmark", "policy_expected_losses", "policy_logits", "solve_reference_front", "train_policy",
]

#: The weightings the benchmark runs by default (labels of :data:`paretoalign.synthetic.tabular.WEIGHTING_VARIANTS`).
POLICY_WEIGHTINGS = ("weighted_sum", "mgda", "pcgrad", "cagrad", "raco")

#: ``weighting`` of the record of the reference front's own points at the user weights.
REFERENCE_LABEL = "reference front"

OPTIMIZERS = ("adam", "sgd")


@dataclass
class PolicyBenchmarkConfig:
    """One condition of the policy benchmark (see :mod:`paretoalign.synthetic.policy` for the construction)."""

    num_prompts: int = field(default=16, metadata=field_help("Prompts P, each with fixed Gaussian features."))
    num_features: int = field(default=8, metadata=field_help("Features d per prompt."))
    hidden_size: int = field(
        default=8, metadata=field_help("Hidden width H of the MLP policy (below P: limited capacity).")
    )
    num_responses: int = field(default=6, metadata=field_help("Responses R per prompt."))
    num_objectives: int = field(default=2, metadata=field_help("Objectives K."))
    angle_degrees: float = field(
        default=120.0, metadata=field_help("Angle between the first and last objectives' utilities (0: aligned).")
    )
    utility_scale: float = field(default=2.0, metadata=field_help("Root-mean-square entry of every utility table."))
    scale_ratio: float = field(
        default=1.0,
        metadata=field_help("Loss scale of objective 1; the others have scale 1 (gradient-scale imbalance)."),
    )
    beta: float = field(default=0.5, metadata=field_help("DPO beta."))
    batch_size: int = field(default=16, metadata=field_help("Sampled pairs per step (gradient noise)."))
    steps: int = field(default=300, metadata=field_help("Training steps per run."))
    optimizer: str = field(default="adam", metadata=field_help("`adam` or `sgd`."))
    learning_rate: float = field(
        default=0.05, metadata=field_help("Initial learning rate of the training runs (cosine decay to 0).")
    )
    c: float = field(default=0.4, metadata=field_help("CAGrad / RACO `c`."))
    gradient_clip_fraction: float = field(
        default=0.5,
        metadata=field_help("Threshold of `raco(clip_target=gradient_norm)` as a fraction of the largest scaled "
                            "exact gradient norm at the reference policy."),
    )
    weight_divisions: int | None = field(
        default=None,
        metadata=field_help("User weights: the rows of `simplex_grid(K, weight_divisions)` without a zero weight; "
                            "default 6 for K = 2 (5 vectors), else 5 (6 vectors for K = 3)."),
    )
    front_divisions: int | None = field(
        default=None,
        metadata=field_help(
            "Reference-front lattice: `simplex_grid(K, front_divisions)`; default 20 for K = 2, else 8."
        ),
    )
    front_restarts: int = field(
        default=3, metadata=field_help("Full-batch runs per reference-front weight (the best is kept).")
    )
    front_steps: int = field(default=2000, metadata=field_help("Adam steps of each reference-front run."))
    front_learning_rate: float = field(
        default=0.02, metadata=field_help("Initial learning rate of the reference-front runs (cosine decay to 0).")
    )
    weightings: tuple[str, ...] = field(
        default=POLICY_WEIGHTINGS, metadata=field_help("Weightings to run (labels of the tabular benchmark).")
    )
    seed: int = field(default=0, metadata=field_help("Seed of the instance and of the minibatches."))

    def __post_init__(self) -> None:
        if self.num_objectives < 2:
            raise ValueError(f"num_objectives: the benchmark needs at least 2 objectives, got {self.num_objectives}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        if not (math.isfinite(self.scale_ratio) and self.scale_ratio > 0):
            raise ValueError(f"scale_ratio must be positive and finite, got {self.scale_ratio}.")
        for name in ("batch_size", "steps", "front_restarts", "front_steps", "weight_divisions", "front_divisions"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        unknown = [label for label in self.weightings if label not in WEIGHTING_VARIANTS]
        if unknown:
            raise ValueError(f"weightings: unknown {unknown}; choose from {list(WEIGHTING_VARIANTS)}.")

    def user_weights(self) -> np.ndarray:
        """The user weight vectors: the rows of ``simplex_grid(K, weight_divisions)`` whose weights are all positive
        (6 divisions for K = 2, else 5). At a weight vector with a zero, objectives are dropped rather than traded."""
        divisions = self.weight_divisions or (6 if self.num_objectives == 2 else 5)
        if divisions < self.num_objectives:
            raise ValueError(
                f"weight_divisions must be at least K = {self.num_objectives} for weights without a zero, "
                f"got {divisions}."
            )
        lattice = simplex_grid(self.num_objectives, divisions)
        return lattice[(lattice > 0).all(axis=1)]

    def front_weights(self) -> np.ndarray:
        """The reference-front lattice ``simplex_grid(K, front_divisions)`` (20 divisions for K = 2, else 8)."""
        divisions = self.front_divisions or (20 if self.num_objectives == 2 else 8)
        return simplex_grid(self.num_objectives, divisions)


class PolicyParameters(NamedTuple):
    """The MLP's weights, each with optional leading batch dimensions: ``input_weight`` [..., d, H],
    ``input_bias`` [..., H], ``output_weight`` [..., H, R], ``output_bias`` [..., R]."""

    input_weight: Tensor
    input_bias: Tensor
    output_weight: Tensor
    output_bias: Tensor


@dataclass
class PolicyProblem:
    """Prompt features [P, d], the reference MLP, the tabular DPO problem of its logits (``table.theta_ref`` =
    ``f_ref(X)``, utilities [K, P, R], beta) and the loss scales ``s`` [K]."""

    features: Tensor
    reference: PolicyParameters
    table: TabularProblem
    loss_scales: Tensor

    @property
    def num_objectives(self) -> int:
        return self.table.num_objectives


def policy_logits(parameters: PolicyParameters, features: Tensor) -> Tensor:
    """``f_phi(X) = tanh(X W_1 + b_1) W_2 + b_2``, shape [..., P, R] (batched over the parameters' leading dims)."""
    hidden = torch.tanh(features @ parameters.input_weight + parameters.input_bias[..., None, :])
    return hidden @ parameters.output_weight + parameters.output_bias[..., None, :]


def initial_parameters(
    config: PolicyBenchmarkConfig, generator: torch.Generator, batch_shape: tuple[int, ...] = ()
) -> PolicyParameters:
    """Gaussian initialisation: ``W_1 ~ N(0, 1/d)``, ``b_1 ~ N(0, 0.01)``, ``W_2 ~ N(0, 1/H)``, ``b_2 = 0``."""

    def gaussian(*shape: int) -> Tensor:
        return torch.randn(*batch_shape, *shape, generator=generator, dtype=torch.float64)

    d, hidden, responses = config.num_features, config.hidden_size, config.num_responses
    return PolicyParameters(
        input_weight=gaussian(d, hidden) / math.sqrt(d),
        input_bias=0.1 * gaussian(hidden),
        output_weight=gaussian(hidden, responses) / math.sqrt(hidden),
        output_bias=torch.zeros(*batch_shape, responses, dtype=torch.float64),
    )


def _stream(seed: int, *stream: int) -> int:
    """An independent seed for one random stream of instance ``seed`` (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])


def loss_scales(num_objectives: int, scale_ratio: float) -> Tensor:
    """``s = (scale_ratio, 1, ..., 1)``, shape [K]."""
    scales = torch.ones(num_objectives, dtype=torch.float64)
    scales[0] = scale_ratio
    return scales


def make_policy_problem(config: PolicyBenchmarkConfig) -> PolicyProblem:
    """The instance of ``config.seed``: features, reference MLP and :func:`conflicting_utilities` (the same for every
    batch size and scale ratio)."""
    generator = torch.Generator().manual_seed(config.seed)
    features = torch.randn(config.num_prompts, config.num_features, generator=generator, dtype=torch.float64)
    reference = initial_parameters(config, generator)
    utilities = conflicting_utilities(
        config.num_prompts, config.num_responses, config.num_objectives, config.angle_degrees, config.utility_scale,
        generator,
    )
    table = TabularProblem(theta_ref=policy_logits(reference, features), utilities=utilities, beta=config.beta)
    return PolicyProblem(
        features=features,
        reference=reference,
        table=table,
        loss_scales=loss_scales(config.num_objectives, config.scale_ratio),
    )


def policy_expected_losses(parameters: PolicyParameters, problem: PolicyProblem) -> Tensor:
    """Exact expected DPO losses ``L_k(phi)`` (unscaled), shape [..., K] for parameters with leading dims [...]."""
    logits = policy_logits(parameters, problem.features)
    return expected_losses(logits.unsqueeze(-3), problem.table)


@dataclass
class ReferenceFront:
    """The kept full-batch solutions: their weights lambda [M, K] and loss vectors [M, K], the hypervolume reference
    point and the hypervolume of the loss vectors."""

    weights: Tensor
    losses: Tensor
    reference_point: np.ndarray
    hypervolume: float

    def minimum_weighted_loss(self, weights: Sequence[float]) -> float:
        """``min L_w`` estimated as the lowest ``w . L`` over the front's points."""
        return float((self.losses @ torch.as_tensor(weights, dtype=torch.float64)).min())

    def losses_at(self, weights: Sequence[float]) -> Tensor:
        """The loss vector of the point solved for exactly these weights."""
        distances = (self.weights - torch.as_tensor(weights, dtype=torch.float64)).abs().amax(dim=1)
        matches = torch.nonzero(distances < 1e-12)
        if len(matches) == 0:
            raise ValueError(f"the reference front was not solved at weights {list(weights)}.")
        return self.losses[int(matches[0, 0])]


@single_threaded()
def solve_reference_front(
    problem: PolicyProblem, config: PolicyBenchmarkConfig, extra_weights: np.ndarray | None = None
) -> ReferenceFront:
    """Full-batch weighted-sum runs on the exact losses for every lambda of ``config.front_weights()`` and
    every row of ``extra_weights``, ``front_restarts`` restarts each (restart 0 from ``phi_ref``), best kept."""
    lattice = config.front_weights()
    if extra_weights is not None:
        lattice = np.concatenate([lattice, np.asarray(extra_weights, dtype=np.float64)])
    lambdas = torch.as_tensor(lattice, dtype=torch.float64)
    count = len(lambdas)
    generator = torch.Generator().manual_seed(_stream(config.seed, 1))
    starts = [problem.reference]
    starts += [initial_parameters(config, generator, (count,)) for _ in range(config.front_restarts - 1)]
    parameters = [
        torch.cat([start[index].expand(count, *problem.reference[index].shape) for start in starts])
        .clone()
        .requires_grad_(True)
        for index in range(len(problem.reference))
    ]
    all_lambdas = lambdas.repeat(config.front_restarts, 1)
    optimizer = torch.optim.Adam(parameters, lr=config.front_learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.front_steps)
    for _ in range(config.front_steps):
        optimizer.zero_grad(set_to_none=True)
        losses = policy_expected_losses(PolicyParameters(*parameters), problem)
        (all_lambdas * losses).sum().backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        losses = policy_expected_losses(PolicyParameters(*parameters), problem)
    weighted = (all_lambdas * losses).sum(dim=1).reshape(config.front_restarts, count)
    best = weighted.argmin(dim=0)
    kept = losses.reshape(config.front_restarts, count, -1)[best, torch.arange(count)]
    reference_point = hypervolume_reference(kept)
    return ReferenceFront(
        weights=lambdas,
        losses=kept,
        reference_point=reference_point,
        hypervolume=hypervolume(kept.numpy(), reference_point, maximize=False),
    )


def _optimizer(config: PolicyBenchmarkConfig, parameters: list[Tensor]) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.learning_rate)
    return torch.optim.SGD(parameters, lr=config.learning_rate)


@single_threaded()
def train_policy(
    problem: PolicyProblem, weighting: torch.nn.Module, config: PolicyBenchmarkConfig, generator: torch.Generator
) -> PolicyParameters:
    """``config.steps`` steps from ``phi_ref``: sample ``batch_size`` pairs, scaled minibatch DPO losses
    ``s_k L^_k``, their gradients combined by ``weighting`` through :class:`ObjectiveGradients` (exact), one optimizer
    step. Returns the final parameters."""
    parameters = [tensor.clone().requires_grad_(True) for tensor in problem.reference]
    engine = ObjectiveGradients(parameters, weighting, mode="exact")
    optimizer = _optimizer(config, parameters)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    for _ in range(config.steps):
        pairs = sample_preference_pairs(problem.table, config.batch_size, generator)
        logits = policy_logits(PolicyParameters(*parameters), problem.features)
        losses = problem.loss_scales * sampled_losses(logits, problem.table, pairs)
        optimizer.zero_grad(set_to_none=True)
        engine.backward(losses)
        optimizer.step()
        schedule.step()
    return PolicyParameters(*(tensor.detach() for tensor in parameters))


def _gradient_clip_threshold(problem: PolicyProblem, fraction: float) -> float:
    """``fraction * max_k ||s_k grad L_k(phi_ref)||`` (exact), the threshold of RACO's gradient-norm clipping."""
    parameters = [tensor.clone().requires_grad_(True) for tensor in problem.reference]
    losses = problem.loss_scales * policy_expected_losses(PolicyParameters(*parameters), problem)
    norms = [
        math.sqrt(sum(float(g.pow(2).sum()) for g in torch.autograd.grad(loss, parameters, retain_graph=True)))
        for loss in losses
    ]
    return fraction * max(norms)


def _run_record(start: list[float], losses: Tensor, weights: np.ndarray, front: ReferenceFront) -> dict:
    w = torch.as_tensor(weights, dtype=torch.float64)
    worse = bool(((losses > torch.tensor(start, dtype=torch.float64)) & (w > 0)).any())
    return {
        "weights": weights.tolist(),
        "losses": losses.tolist(),
        "weighted_loss_gap": float(w @ losses) - front.minimum_weighted_loss(weights),
        "preference_angle": preference_angle_degrees(start, losses.tolist(), weights),
        "worse": worse,
    }


def _seed_summary(seed: int, runs: list[dict], front: ReferenceFront) -> dict:
    points = np.array([run["losses"] for run in runs])
    return {
        "seed": seed,
        "hypervolume_fraction": hypervolume(points, front.reference_point, maximize=False) / front.hypervolume,
        "weighted_loss_gap": float(np.mean([run["weighted_loss_gap"] for run in runs])),
        "preference_angle": float(np.nanmean([run["preference_angle"] for run in runs])),
        "runs": runs,
    }


def _spread(values: list[float]) -> float:
    """Sample standard deviation (0 for a single value)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _condition_record(config: PolicyBenchmarkConfig, label: str, per_seed: list[dict]) -> dict:
    fractions = [entry["hypervolume_fraction"] for entry in per_seed]
    gaps = [entry["weighted_loss_gap"] for entry in per_seed]
    runs = [run for entry in per_seed for run in entry["runs"]]
    worse = sum(run["worse"] for run in runs)
    return {
        "num_objectives": config.num_objectives,
        "batch_size": config.batch_size,
        "scale_ratio": config.scale_ratio,
        "weighting": label,
        "hypervolume_fraction_mean": float(np.mean(fractions)),
        "hypervolume_fraction_std": _spread(fractions),
        "weighted_loss_gap_mean": float(np.mean(gaps)),
        "weighted_loss_gap_std": _spread(gaps),
        "preference_angle_mean": float(np.nanmean([entry["preference_angle"] for entry in per_seed])),
        "worse_runs": worse,
        "num_runs": len(runs),
        "worse_share": worse / len(runs),
        "per_seed": per_seed,
    }


def policy_benchmark(
    config: PolicyBenchmarkConfig,
    seeds: Sequence[int],
    objectives: Sequence[int] = (2, 3),
    batch_sizes: Sequence[int] = (4, 16, 64),
    scale_ratios: Sequence[float] = (1.0, 10.0),
) -> list[dict]:
    """Every weighting of ``config`` on every K x batch size x scale ratio, each over ``seeds``.

    One record per (K, weighting, batch size, scale ratio), and per K one :data:`REFERENCE_LABEL` record (the
    reference front's points at the user weights; batch size and scale ratio None). The reference front of each
    (K, seed) is solved once: it depends on neither the batch size nor the scale. Records hold the means and
    spreads over the seeds and, under ``per_seed``, every run.
    """
    if not seeds:
        raise ValueError("seeds: give at least one seed.")
    records = []
    for num_objectives in objectives:
        base = PolicyBenchmarkConfig(**{**asdict(config), "num_objectives": num_objectives})
        user_weights = base.user_weights()
        start = [math.log(2.0)] * num_objectives
        fronts, reference_runs = {}, []
        for seed in seeds:
            seeded = PolicyBenchmarkConfig(**{**asdict(base), "seed": seed})
            front = solve_reference_front(make_policy_problem(seeded), seeded, user_weights)
            fronts[seed] = front
            runs = [_run_record(start, front.losses_at(w), w, front) for w in user_weights]
            reference_runs.append(_seed_summary(seed, runs, front))
        reference = _condition_record(base, REFERENCE_LABEL, reference_runs)
        records.append({**reference, "batch_size": None, "scale_ratio": None})
        for batch_size in batch_sizes:
            for scale_ratio in scale_ratios:
                condition = PolicyBenchmarkConfig(
                    **{**asdict(base), "batch_size": batch_size, "scale_ratio": scale_ratio}
                )
                records.extend(_run_condition(condition, seeds, user_weights, fronts, start))
    return records


def _run_condition(
    config: PolicyBenchmarkConfig,
    seeds: Sequence[int],
    user_weights: np.ndarray,
    fronts: dict[int, ReferenceFront],
    start: list[float],
) -> list[dict]:
    per_weighting: dict[str, list[dict]] = {label: [] for label in config.weightings}
    for seed in seeds:
        seeded = PolicyBenchmarkConfig(**{**asdict(config), "seed": seed})
        problem = make_policy_problem(seeded)
        clip_threshold = _gradient_clip_threshold(problem, config.gradient_clip_fraction)
        for label in config.weightings:
            runs = []
            for index, w in enumerate(user_weights):
                weighting = make_weighting(label, w, config.c, clip_threshold)
                generator = torch.Generator().manual_seed(_stream(seed, 2, index))
                # PCGrad's random projection order draws from torch's global generator: seed it, then restore it.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(_stream(seed, 3, index))
                    parameters = train_policy(problem, weighting, seeded, generator)
                with torch.no_grad():
                    losses = policy_expected_losses(parameters, problem)
                runs.append(_run_record(start, losses, w, fronts[seed]))
            per_weighting[label].append(_seed_summary(seed, runs, fronts[seed]))
    return [_condition_record(config, label, per_seed) for label, per_seed in per_weighting.items()]


def _mean_spread(mean: float, spread: float, spec: str) -> str:
    return f"{format(mean, spec)} ± {format(spread, spec)}"


def format_policy_tables(records: list[dict]) -> str:
    """Markdown tables of :func:`policy_benchmark` records, one per K: the reference row, then one row per batch
    size, scale ratio and weighting."""
    header = (
        "| batch | scale ratio | weighting | HV fraction | L_w gap | pref. angle | worse |\n"
        "|---:|---:|---|---:|---:|---:|---:|"
    )
    blocks = []
    for num_objectives in dict.fromkeys(record["num_objectives"] for record in records):
        rows = [record for record in records if record["num_objectives"] == num_objectives]
        seeds = len(rows[0]["per_seed"])
        lines = [f"K = {num_objectives} ({seeds} seeds; mean ± sample standard deviation over the seeds)", "", header]
        for record in rows:
            batch = "full" if record["batch_size"] is None else str(record["batch_size"])
            scale = "-" if record["scale_ratio"] is None else f"{record['scale_ratio']:g}"
            lines.append(
                f"| {batch} | {scale} | {record['weighting']} "
                f"| {_mean_spread(record['hypervolume_fraction_mean'], record['hypervolume_fraction_std'], '.3f')} "
                f"| {_mean_spread(record['weighted_loss_gap_mean'], record['weighted_loss_gap_std'], '.4f')} "
                f"| {record['preference_angle_mean']:.1f} "
                f"| {record['worse_runs']}/{record['num_runs']} |"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
