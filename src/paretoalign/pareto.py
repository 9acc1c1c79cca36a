"""Pareto utilities: dominance, Pareto fronts, hypervolume, simplex weight grids, Pareto criticality, and
percentile-bootstrap intervals of a mean, of measured points and of their hypervolume.

Conventions: a set of ``n`` points with ``K`` objectives is an ``[n, K]`` array (numpy array, torch tensor
or nested list); every function computes in float64 and returns numpy arrays or Python floats. By default
all objectives are maximised; ``maximize=False`` minimises all of them.

Percentile bootstrap (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 13): a statistic ``T`` of
samples is recomputed on ``B`` resamples, each drawing every sample's ``n`` values with replacement; the interval at
level ``1 - alpha`` is ``[q_{alpha/2}, q_{1 - alpha/2}]``, the empirical quantiles of the ``B`` values of ``T``
(``numpy.quantile``, linear interpolation). Resamples come from ``numpy.random.default_rng(seed)``, so a seed
gives the same interval every time.
"""

from __future__ import annotations

import itertools
import math
import operator

import numpy as np
import torch
from pymoo.indicators.hv import HV

__all__ = [
    "bootstrap_hypervolume", "bootstrap_hypervolume_difference", "bootstrap_mean_interval", "bootstrap_point_intervals",
    "hypervolume", "min_norm_weights", "pareto_criticality", "pareto_front", "pareto_mask", "simplex_grid",
]

GRAM_RELATIVE_TOLERANCE = 1e-6
"""Allowed asymmetry ``max |G - G^T|`` and negative eigenvalue of a Gram matrix, relative to ``max_ij |G_ij|``."""

MIN_NORM_GAP_TOLERANCE = 1e-13
"""The active-set solver stops when its duality gap is below this, relative to ``max_i G_ii``."""


def _to_float64_array(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array, got {type(values).__name__}: {error}") from error


def _require_finite(array: np.ndarray, name: str) -> None:
    non_finite = ~np.isfinite(array)
    if non_finite.any():
        index = tuple(int(i) for i in np.argwhere(non_finite)[0])
        raise ValueError(
            f"{name} must be finite; found {array[index]} at index {index} "
            f"({int(non_finite.sum())} non-finite value(s) in total)"
        )


def _reference_point(reference) -> np.ndarray:
    """``reference`` as a float64 array of shape ``[K]``; ValueError for any other shape."""
    reference_point = _to_float64_array(reference, "reference")
    if reference_point.ndim != 1 or reference_point.size == 0:
        raise ValueError(f"reference must be a non-empty 1-D array of shape [K], got shape {reference_point.shape}")
    return reference_point


def _as_points(points, name: str = "points", num_objectives: int | None = None) -> np.ndarray:
    """Validate and convert a point set to a float64 array of shape [n, K]."""
    array = _to_float64_array(points, name)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, num_objectives or 0)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape [n_points, n_objectives], got shape {array.shape}; "
            "reshape a single point to [1, K] and a single objective to [n, 1]"
        )
    if array.shape[0] > 0 and array.shape[1] == 0:
        raise ValueError(f"{name} must have at least one objective (column), got shape {array.shape}")
    if num_objectives is not None and array.shape[0] > 0 and array.shape[1] != num_objectives:
        raise ValueError(
            f"{name} has {array.shape[1]} objectives (columns) but the reference point has {num_objectives}"
        )
    _require_finite(array, name)
    return array


def pareto_mask(points, maximize: bool = True) -> np.ndarray:
    """Boolean mask of the non-dominated points.

    With ``maximize=True``, ``p`` dominates ``q`` iff ``p_k >= q_k`` for every objective ``k`` and
    ``p_k > q_k`` for at least one; with ``maximize=False`` both inequalities are reversed. The mask is
    True for every point that no other point dominates. Identical points do not dominate each other, so
    all copies of a non-dominated point are kept. A point that ties another on some objectives and is worse
    on one is dominated.

    Args:
        points: ``[n, K]`` objective values.
        maximize: whether larger values are better (for every objective).

    Returns:
        ``[n]`` bool array.

    Raises:
        ValueError: if ``points`` is not 2-D, has no column, or has a non-finite value.
    """
    gains = _as_points(points)
    if not maximize:
        gains = -gains
    mask = np.ones(len(gains), dtype=bool)
    for index, point in enumerate(gains):
        at_least_as_good = np.all(gains >= point, axis=1)
        better_somewhere = np.any(gains > point, axis=1)
        mask[index] = not np.any(at_least_as_good & better_somewhere)
    return mask


def pareto_front(points, maximize: bool = True) -> np.ndarray:
    """The non-dominated points (see :func:`pareto_mask`), sorted by the first objective ascending.

    Ties in the first objective are broken by the second, then the third, and so on, so the order is
    deterministic. For two maximised objectives the second objective is then descending along the front,
    which is the order a line plot of the front needs.

    Returns:
        ``[m, K]`` float64 array, ``m <= n``; duplicates of a non-dominated point are all kept.
    """
    array = _as_points(points)
    front = array[pareto_mask(array, maximize=maximize)]
    order = np.lexsort(front.T[::-1])
    return front[order]


def _union_of_boxes_area(gains: np.ndarray) -> float:
    """Area of the union of the boxes ``[0, x_i] x [0, y_i]`` for positive ``(x_i, y_i)``.

    Sweep by decreasing ``x``: each point adds the strip ``x_i * (y_i - y_max)`` above the highest ``y``
    seen so far, when it is higher.
    """
    area = 0.0
    highest = 0.0
    for x, y in gains[np.argsort(-gains[:, 0], kind="stable")]:
        if y > highest:
            area += x * (y - highest)
            highest = y
    return float(area)


def hypervolume(points, reference, maximize: bool = True) -> float:
    """Hypervolume of the region dominated by the points and bounded by the reference point.

    With ``maximize=True`` and gains ``d_i = p_i - r`` (``d_i = r - p_i`` with ``maximize=False``)::

        HV(P, r) = Lebesgue volume of  union_{i : d_i > 0 in every coordinate}  [0, d_i]

    i.e. the volume of the points ``z`` with ``r < z <= p_i`` (coordinate-wise) for some ``i``. Points
    that do not strictly beat the reference in every objective contribute nothing. One objective gives
    ``max_i d_i``; two objectives use an exact sweep (sort by the first gain, accumulate strips); three or
    more use ``pymoo.indicators.hv.HV``, which minimises, on the negated gains with reference 0.

    Args:
        points: ``[n, K]`` objective values (an empty set gives 0.0).
        reference: ``[K]`` reference point, worse than the points of interest in every objective.
        maximize: whether larger values are better (for every objective).

    Returns:
        The hypervolume as a Python float (0.0 when no point strictly beats the reference).

    Raises:
        ValueError: if shapes do not match (``points`` ``[n, K]``, ``reference`` ``[K]``) or a value is
        not finite.
    """
    reference_point = _reference_point(reference)
    _require_finite(reference_point, "reference")
    num_objectives = reference_point.size
    array = _as_points(points, num_objectives=num_objectives)
    gains = array - reference_point if maximize else reference_point - array
    gains = gains[np.all(gains > 0, axis=1)]
    if len(gains) == 0:
        return 0.0
    if num_objectives == 1:
        return float(gains.max())
    if num_objectives == 2:
        return _union_of_boxes_area(gains)
    return float(HV(ref_point=np.zeros(num_objectives))(-gains))


def simplex_grid(num_objectives: int, divisions: int) -> np.ndarray:
    """All weight vectors of the simplex lattice with ``divisions`` steps.

    The rows are every ``w = (c_1, ..., c_K) / n`` with integers ``c_k >= 0`` and ``sum_k c_k = n``, in
    lexicographically descending order of ``(c_1, ..., c_K)``: the first row is ``(1, 0, ..., 0)`` and the
    last ``(0, ..., 0, 1)``. Each entry is the float64 quotient ``c_k / n`` (so rows sum to 1 up to
    rounding). There are ``C(n + K - 1, K - 1)`` rows.

    Args:
        num_objectives: ``K >= 1``, the number of weights per row.
        divisions: ``n >= 1``, the number of steps between 0 and 1.

    Returns:
        ``[C(n + K - 1, K - 1), K]`` float64 array.
    """
    counts = {"num_objectives": num_objectives, "divisions": divisions}
    for name, value in counts.items():
        if isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        try:
            counts[name] = operator.index(value)
        except TypeError as error:
            raise ValueError(f"{name} must be an integer, got {value!r}") from error
        if counts[name] < 1:
            raise ValueError(f"{name} must be >= 1, got {counts[name]}")
    num_objectives, divisions = counts["num_objectives"], counts["divisions"]
    slots = divisions + num_objectives - 1
    rows = []
    for bars in itertools.combinations(range(slots), num_objectives - 1):
        edges = (-1, *bars, slots)
        rows.append([edges[k + 1] - edges[k] - 1 for k in range(num_objectives)])
    rows.reverse()
    return np.array(rows, dtype=np.int64).reshape(-1, num_objectives) / divisions


def _as_gram(gram) -> np.ndarray:
    """Validate and convert a Gram matrix to a symmetric float64 ``[K, K]`` array."""
    matrix = _to_float64_array(gram, "gram")
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"gram must be a non-empty square [K, K] matrix, got shape {matrix.shape}")
    _require_finite(matrix, "gram")
    tolerance = GRAM_RELATIVE_TOLERANCE * max(float(np.max(np.abs(matrix))), np.finfo(np.float64).tiny)
    asymmetry = float(np.max(np.abs(matrix - matrix.T)))
    if asymmetry > tolerance:
        raise ValueError(f"gram must be symmetric; max |G - G^T| = {asymmetry:.3g} exceeds {tolerance:.3g}")
    matrix = (matrix + matrix.T) / 2
    smallest_eigenvalue = float(np.linalg.eigvalsh(matrix)[0])
    if smallest_eigenvalue < -tolerance:
        raise ValueError(
            f"gram must be positive semi-definite (a Gram matrix of gradients); "
            f"smallest eigenvalue {smallest_eigenvalue:.3g} is below -{tolerance:.3g}"
        )
    return matrix


def _affine_min_norm_weights(gram: np.ndarray) -> np.ndarray:
    """Weights ``q`` minimising ``q^T G q`` subject to ``sum q = 1`` only (no sign constraint).

    Solves the KKT system ``[[G, 1], [1^T, 0]] [q; mu] = [0; 1]`` in the least-squares sense, which is exact
    when the points are affinely independent.
    """
    size = len(gram)
    system = np.zeros((size + 1, size + 1))
    system[:size, :size] = gram
    system[:size, size] = 1.0
    system[size, :size] = 1.0
    right_hand_side = np.zeros(size + 1)
    right_hand_side[size] = 1.0
    solution = np.linalg.lstsq(system, right_hand_side, rcond=None)[0]
    return solution[:size]


def _min_norm_weights_active_set(gram: np.ndarray) -> np.ndarray:
    """Wolfe's (1976) min-norm-point active-set algorithm, written with the Gram matrix only.

    Major step: with ``x = sum_i p_i g_i``, add the gradient ``j = argmin_j (G p)_j`` while the duality gap
    ``p^T G p - min_j (G p)_j`` is not negligible; by convexity ``f(p) - f* <= 2 * gap`` for
    ``f(p) = p^T G p``.
    Minor steps: move towards the min-norm point of the affine hull of the active set, stopping at the
    simplex boundary and dropping the gradients whose weight reaches 0 (at least one per minor step), until
    that affine minimiser has positive weights. Each major step decreases ``p^T G p`` in exact arithmetic;
    when rounding (or a Gram matrix indefinite at rounding level, e.g. computed in float32) stops that
    decrease, the previous weights are returned.
    """
    num_objectives = len(gram)
    scale = max(float(np.max(np.diag(gram))), np.finfo(np.float64).tiny)
    gap_tolerance = MIN_NORM_GAP_TOLERANCE * scale
    weights = np.zeros(num_objectives)
    active = [int(np.argmin(np.diag(gram)))]
    weights[active[0]] = 1.0
    squared_norm = float(gram[active[0], active[0]])
    for _ in range(50 * num_objectives + 100):
        gradient_products = gram @ weights
        entering = int(np.argmin(gradient_products))
        if squared_norm - gradient_products[entering] <= gap_tolerance or entering in active:
            break
        previous_weights = weights.copy()
        active.append(entering)
        while True:
            affine = _affine_min_norm_weights(gram[np.ix_(active, active)])
            if np.all(affine > 0):
                weights[:] = 0.0
                weights[active] = affine
                break
            current = weights[active]
            blocking = np.flatnonzero(affine <= 0)
            ratios = current[blocking] / (current[blocking] - affine[blocking])
            step = float(np.min(ratios))
            moved = current + step * (affine - current)
            moved[blocking[np.argmin(ratios)]] = 0.0
            weights[:] = 0.0
            weights[active] = np.clip(moved, 0.0, None)
            active = [index for index in active if weights[index] > 0]
            if not active:
                active = [entering]
                weights[entering] = 1.0
        new_squared_norm = float(weights @ gram @ weights)
        if new_squared_norm >= squared_norm:
            weights = previous_weights
            break
        squared_norm = new_squared_norm
    return weights / weights.sum()


def _solve_min_norm_weights(matrix: np.ndarray) -> np.ndarray:
    """Min-norm weights of an already validated Gram matrix (see :func:`min_norm_weights`)."""
    if len(matrix) == 1:
        return np.ones(1)
    if len(matrix) == 2:
        difference_squared_norm = matrix[0, 0] + matrix[1, 1] - 2 * matrix[0, 1]
        if difference_squared_norm <= 0:
            first_weight = 1.0
        else:
            first_weight = float(np.clip((matrix[1, 1] - matrix[0, 1]) / difference_squared_norm, 0.0, 1.0))
        return np.array([first_weight, 1.0 - first_weight])
    return _min_norm_weights_active_set(matrix)


def min_norm_weights(gram) -> np.ndarray:
    """Convex weights of the min-norm point of the convex hull of the gradients (MGDA weights).

    ``p* = argmin_{p in simplex} p^T G p`` for the ``K x K`` Gram matrix ``G_ij = <g_i, g_j>``, so that
    ``sum_i p*_i g_i`` is the shortest vector in ``conv{g_1, ..., g_K}``. ``K = 1`` gives ``[1]``;
    ``K = 2`` the closed form ``p_1 = clip((G_22 - G_12) / (G_11 + G_22 - 2 G_12), 0, 1)`` (``p_1 = 1`` when
    the denominator ``||g_1 - g_2||^2`` is 0); ``K >= 3`` Wolfe's active-set algorithm in float64, which
    ends at a duality gap ``p^T G p - min_j (G p)_j`` below ``MIN_NORM_GAP_TOLERANCE * max_i G_ii`` or
    when rounding stops it from decreasing ``p^T G p``. When the minimiser is not unique
    (e.g. a singular ``G``), one minimiser is returned.

    Args:
        gram: ``[K, K]`` symmetric positive semi-definite matrix (numpy array, torch tensor or list).

    Returns:
        ``[K]`` float64 array on the probability simplex.

    Raises:
        ValueError: if ``gram`` is not square, not finite, not symmetric or not positive semi-definite
        (both up to ``GRAM_RELATIVE_TOLERANCE * max |G_ij|``).
    """
    return _solve_min_norm_weights(_as_gram(gram))


def pareto_criticality(gram) -> float:
    """Squared norm of the min-norm point of the convex hull of the gradients.

    ``c(G) = min_{p in simplex} p^T G p = min_{p in simplex} || sum_i p_i g_i ||^2`` for the ``K x K`` Gram
    matrix ``G_ij = <g_i, g_j>`` (Désidéri 2012, MGDA). It is 0 iff some convex combination of the
    gradients vanishes, i.e. the point is Pareto-stationary; ``c(G) <= eps`` defines an eps-Pareto-critical
    point. Solved exactly for ``K <= 2`` and by Wolfe's active-set algorithm for ``K >= 3`` (see
    :func:`min_norm_weights`). Rounding below 0 is clipped to 0.

    Args:
        gram: ``[K, K]`` symmetric positive semi-definite matrix (numpy array, torch tensor or list).

    Returns:
        ``c(G) >= 0`` as a Python float.
    """
    matrix = _as_gram(gram)
    weights = _solve_min_norm_weights(matrix)
    return max(float(weights @ matrix @ weights), 0.0)


def _check_bootstrap(resamples: int, level: float) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")


def _interval_quantiles(level: float) -> list[float]:
    return [(1.0 - level) / 2.0, (1.0 + level) / 2.0]


def bootstrap_mean_interval(
    values, *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """The mean of ``values`` and its percentile-bootstrap interval (see the module docstring).

    Each of the ``resamples`` resamples draws ``n`` of the ``n`` values with replacement and takes their mean;
    ``(low, high)`` are the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those means.

    Args:
        values: ``[n]`` finite numbers (e.g. per-pair outcomes 1, 1/2, 0, whose mean is an accuracy).

    Returns:
        ``(mean, low, high)``; all three NaN for no values.

    Raises:
        ValueError: ``values`` is not 1-D or holds a non-finite number; a bad ``resamples`` or ``level``.
    """
    _check_bootstrap(resamples, level)
    array = _to_float64_array(values, "values")
    if array.ndim != 1:
        raise ValueError(f"values must be a 1-D array, got shape {array.shape}")
    _require_finite(array, "values")
    if array.size == 0:
        return math.nan, math.nan, math.nan
    draws = np.random.default_rng(seed).integers(0, array.size, size=(resamples, array.size))
    low, high = np.quantile(array[draws].mean(axis=1), _interval_quantiles(level))
    return float(array.mean()), float(low), float(high)


def _samples_per_objective(samples, num_objectives: int) -> list[np.ndarray]:
    """``samples[run][seed][k]`` (1-D, NaN allowed) -> per objective k one ``[runs, seeds, n_k]`` array."""
    if len(samples) == 0:
        raise ValueError("samples must hold at least one run")
    num_seeds = len(samples[0])
    if num_seeds == 0:
        raise ValueError("samples[0] must hold at least one seed")
    arrays = []
    for k in range(num_objectives):
        rows = []
        size = None
        for run, seeds in enumerate(samples):
            if len(seeds) != num_seeds:
                raise ValueError(f"samples[{run}] has {len(seeds)} seeds, samples[0] has {num_seeds}: every run "
                                 "is measured once per seed")
            row = []
            for seed, objectives in enumerate(seeds):
                if len(objectives) != num_objectives:
                    raise ValueError(f"samples[{run}][{seed}] has {len(objectives)} objectives, the reference point "
                                     f"{num_objectives}")
                values = _to_float64_array(objectives[k], f"samples[{run}][{seed}][{k}]")
                if values.ndim != 1:
                    raise ValueError(f"samples[{run}][{seed}][{k}] must be 1-D, got shape {values.shape}")
                if np.isinf(values).any():
                    raise ValueError(f"samples[{run}][{seed}][{k}] holds an infinite value; NaN marks a missing one")
                size = values.size if size is None else size
                if values.size != size:
                    raise ValueError(
                        f"samples[{run}][{seed}][{k}] has {values.size} values, samples[0][0][{k}] has {size}: "
                        "every run and seed is measured on the same pairs or prompts"
                    )
                row.append(values)
            rows.append(row)
        arrays.append(np.array(rows, dtype=np.float64).reshape(len(samples), num_seeds, size))
    return arrays


def _pooled_means(array: np.ndarray, seed_counts: np.ndarray, value_counts: np.ndarray) -> np.ndarray:
    """``[B, runs]`` means of ``array`` [runs, seeds, n] over the drawn seeds and values (a drawn entry counts as
    often as it is drawn; NaN entries are left out; NaN where nothing is left)."""
    present = ~np.isnan(array)
    filled = np.where(present, array, 0.0)
    totals = np.einsum("bs,brs->br", seed_counts, np.einsum("rsi,bi->brs", filled, value_counts))
    counts = np.einsum("bs,brs->br", seed_counts, np.einsum("rsi,bi->brs", present.astype(np.float64), value_counts))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.where(counts > 0, counts, 1.0), np.nan)


def _resampled_points(samples, num_objectives: int, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The runs' points ``[runs, K]`` and their bootstrap resamples ``[B, runs, K]``: per resample the seeds and,
    per objective, the values are drawn with replacement, the same draw for every run."""
    arrays = _samples_per_objective(samples, num_objectives)
    num_seeds = arrays[0].shape[1]
    generator = np.random.default_rng(seed)
    seed_counts = generator.multinomial(num_seeds, np.full(num_seeds, 1.0 / num_seeds), size=resamples)
    points, resampled = [], []
    for array in arrays:
        size = array.shape[2]
        value_counts = (generator.multinomial(size, np.full(size, 1.0 / size), size=resamples) if size
                        else np.zeros((resamples, 0)))
        points.append(_pooled_means(array, np.ones((1, num_seeds)), np.ones((1, size)))[0])
        resampled.append(_pooled_means(array, seed_counts.astype(np.float64), value_counts.astype(np.float64)))
    return np.stack(points, axis=-1), np.stack(resampled, axis=-1)


def _finite_hypervolume(points: np.ndarray, reference) -> float:
    return hypervolume(points[np.isfinite(points).all(axis=1)], reference)


def bootstrap_hypervolume(
    samples, reference, *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Hypervolume of a set of measured runs (maximised) with its percentile-bootstrap interval over the samples and
    the seeds.

    ``samples[r][s][k]`` holds run r's values of objective k with seed s, one per evaluation unit (per pair: the
    outcome 1, 1/2 or 0; per prompt: a score; NaN: not measured): every run and seed is measured on the same
    ``n_k`` units of objective k. Run r's point is ``p_rk = mean_{s, i} samples[r][s][k][i]`` (NaN left out). A
    resample draws ``S`` of the ``S`` seeds and, per objective, ``n_k`` of the ``n_k`` units with replacement, the
    same draws for every run (the runs share the evaluation set and the seeds), forms each run's point from the drawn
    entries and takes ``hypervolume(points, reference)``; a run whose point is not finite (nothing measured) adds no
    point.

    Returns:
        ``(hypervolume of the points, low, high)``.

    Raises:
        ValueError: runs with different numbers of seeds, objectives other than the reference point's, different
            numbers of units for one objective, an infinite value; a bad ``resamples`` or ``level``.
    """
    _check_bootstrap(resamples, level)
    reference_point = _reference_point(reference)
    points, resampled = _resampled_points(samples, reference_point.size, resamples, seed)
    volumes = [_finite_hypervolume(draw, reference_point) for draw in resampled]
    low, high = np.quantile(volumes, _interval_quantiles(level))
    return _finite_hypervolume(points, reference_point), float(low), float(high)


def bootstrap_hypervolume_difference(
    samples, baseline, reference, *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``HV(samples) - HV(baseline)`` with its paired percentile-bootstrap interval.

    ``samples`` and ``baseline`` are two sets of runs in the layout of :func:`bootstrap_hypervolume`, measured on the
    same units (pairs or prompts) with the same seeds: each resample draws the seeds and the units once and uses that
    draw for the runs of both sets, so what the two share (which pairs are hard, which seed was lucky) cancels in the
    difference, and the interval is that of the difference itself, usually much narrower than the two hypervolumes'
    own intervals suggest. With the same ``seed``, the draws are those of :func:`bootstrap_hypervolume`.

    Returns:
        ``(difference of the hypervolumes of the points, low, high)``.

    Raises:
        ValueError: as :func:`bootstrap_hypervolume`, over the runs of both sets together.
    """
    _check_bootstrap(resamples, level)
    reference_point = _reference_point(reference)
    if len(samples) == 0 or len(baseline) == 0:
        raise ValueError("samples and baseline must each hold at least one run")
    points, resampled = _resampled_points([*samples, *baseline], reference_point.size, resamples, seed)
    runs = len(samples)

    def difference(draw: np.ndarray) -> float:
        return _finite_hypervolume(draw[:runs], reference_point) - _finite_hypervolume(draw[runs:], reference_point)

    low, high = np.quantile([difference(draw) for draw in resampled], _interval_quantiles(level))
    return difference(points), float(low), float(high)


def bootstrap_point_intervals(
    samples, *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every run's point and, per objective, its percentile-bootstrap interval over the samples and the seeds.

    ``samples`` and the resampling are those of :func:`bootstrap_hypervolume` (with the same ``seed`` the same
    draws); the interval of ``p_rk`` is the quantiles of its resampled values (NaN where none is finite).

    Returns:
        ``(points, low, high)``, each ``[runs, K]``.
    """
    _check_bootstrap(resamples, level)
    if len(samples) == 0 or len(samples[0]) == 0:
        raise ValueError("samples must hold at least one run with at least one seed")
    points, resampled = _resampled_points(samples, len(samples[0][0]), resamples, seed)
    finite = np.isfinite(resampled).any(axis=0)
    low = np.full(points.shape, np.nan)
    high = np.full(points.shape, np.nan)
    if finite.any():
        quantiles = np.nanquantile(resampled[:, finite], _interval_quantiles(level), axis=0)
        low[finite], high[finite] = quantiles[0], quantiles[1]
    return points, low, high
