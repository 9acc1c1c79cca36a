r"""Per-objective gradients from one forward and one backward pass (engine mode ``fused``).

Setting. One forward pass over B batch rows yields N per-pair values ``v_i`` (the preference trainer's log-ratio
differences ``delta_i``), and each of the K losses depends on the parameters only through them, so

    g_k = dL_k/dtheta = sum_i C_ik dv_i/dtheta,        C_ik = dL_k/dv_i,

where the N x K matrix ``C`` is cheap: K gradients through the tiny graph from ``v`` to the losses. Batch row ``b``
belongs to pair ``p(b) = b mod N``, which matches one forward over ``[y_a rows; y_b rows]`` (rows ``i`` and
``N + i`` form pair ``i``, as in the preference trainer) and also separate forwards of N rows each; a forward whose
row count is not a multiple of N is rejected. The forward must treat rows independently (true of causal language models: attention, norms and MLPs act within a row; not of batch
norm). Then ONE backward pass of ``sum_i v_i`` delivers at the output ``y`` of every hooked layer the row
gradients ``dy_b = dv_{p(b)}/dy_b``, and each objective's gradient of the layer's weights is a row-weighted sum:

* ``nn.Linear``, ``y = x W^T + c``:

      dL_k/dW = sum_b C_{p(b)k} sum_t dy_bt x_bt^T,        dL_k/dc = sum_b C_{p(b)k} sum_t dy_bt,

  formed from the per-pair products ``P_i = sum_{b: p(b) = i} sum_t dy_bt x_bt^T`` (one weight-gradient's worth
  of multiply-adds, as a single backward would spend) and then one small matrix product ``sum_i C_ik P_i`` for
  the K objectives together; with K = 1 (or one token per row) the rows are weighted first and go straight into
  one product per objective instead;
* any other leaf module ``y = f(x; w)`` (embedding, RMSNorm, LayerNorm, ...): ``dL_k/dw`` is the vector-Jacobian
  product of ``f`` at the saved input with cotangent ``(C_{p(b)k} dy_b)_b``, by re-running ``f`` (only ``f``: a
  gather or an elementwise map for those modules) and K backward passes through that small local graph.

Per-token values (the RL trainer). When each row carries T values ``v_nt`` (GRPO's per-token log-probabilities
``logp_nt``; every reward's policy-gradient loss reaches the model through them), ``C_ntk = dL_k/dv_nt`` varies along
the row, and a single backward cannot weight tokens: a layer output at position s feeds every later token of its
row, so ``dL_k/dy_ns = sum_t C_ntk dv_nt/dy_ns`` is not ``C_nsk`` times the gradient of a shared backward. Each
row's T x K matrix is therefore factorised, ``C_ntk = sum_r U_rnt A_rnk`` (:func:`row_rank_factors`), and pass r is
the backward of ``sum_nt U_rnt v_nt`` with row coefficients ``A_rnk`` as above:

    g_k = sum_r sum_n A_rnk grad(sum_t U_rnt v_nt).

On-policy GRPO without a KL term (TRL's defaults, ``beta = 0``) has rank 1, ``C_ntk = -Adv_nk m_nt / Z`` (the
decoupled advantage of reward k times the token's loss weight), so one backward pass gives the K gradients; TRL's
KL term, shared by the K losses, adds a second pass.

Which parameters are covered. A trainable parameter is covered when every module that registers it is a leaf
module (no child modules); tied weights (``lm_head`` and ``embed_tokens``) collect the contributions of both
modules. The remaining trainable parameters (registered on a module with children, e.g. PEFT's LoRA embedding
matrices) get their exact per-objective gradients from ``torch.autograd.grad(L_k, those parameters)``: up to K
extra backward passes that stop at the earliest of them. Hugging Face causal language models have none, with full
fine-tuning or LoRA. A covered parameter must enter the forward only through its module's call; the first
:meth:`FusedObjectiveGradients.accumulate` walks the autograd graph and raises if one does not (e.g. the ``out_proj``
of ``nn.MultiheadAttention``, whose weight is read by a functional call; PEFT's DoRA is fine, as it detaches the
norm of ``W + BA`` and so reads the LoRA weights only through their layers). The error is a
:class:`FusedEngineNotApplicable`, on which the trainers' ``engine="auto"`` falls back to ``exact``. Every call also
checks, on the small graph from the losses down to ``v``, that the losses reach no parameter other than through ``v``
(the same error otherwise: e.g. GRPO's entropy bonus reads the logits directly).

Mechanism. A forward hook on each covered module wraps its output in an identity autograd function (a tap) that
also takes a scalar zero leaf, the probe. The single backward asks for the gradient of the probe only, so autograd
runs every tap and every input-gradient product on the way, but no weight-gradient product of a covered layer;
each tap's backward receives ``dy``, forms the K weight gradients and releases the saved input.

Memory: the K per-objective gradient buffers of the engine (K x the trainable parameters, as in ``exact`` mode);
no extra activations (a tap keeps the layer input that the layer's own backward saves anyway, and frees it as the
backward passes); per backward pass, a workspace that every layer reuses for a block of per-pair products of at
most ``ROW_PRODUCT_ELEMENTS`` elements (at least one output feature of every pair: ``N x in``) and their K
combinations. Outputs of covered modules become views made by a custom function, so they must not be modified in
place (PyTorch raises if they are). Gradient checkpointing is not supported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.graph import get_gradient_edge

__all__ = ["ROW_PRODUCT_ELEMENTS", "FusedEngineNotApplicable", "FusedObjectiveGradients", "row_rank_factors"]

ROW_PRODUCT_ELEMENTS = 1 << 24


class FusedEngineNotApplicable(ValueError, TypeError):
    """The model's structure defeats the layer hooks (a covered parameter used outside its module's call, a hooked
    module that does not return one tensor, gradient checkpointing), or the losses read a parameter other than through
    the values; the ``exact`` engine handles such models and losses."""

_SAVED = object()


@dataclass
class _HookedCall:
    """One call of a covered module in a forward pass: what its tap needs to turn ``dy`` into weight gradients.

    `args` and `kwargs` hold ``_SAVED`` in place of each tensor argument: the tap saves those for backward, so they
    are freed as soon as the tap has run, not when the whole graph goes.
    """

    owner: FusedObjectiveGradients
    module: nn.Module
    params: list[Tensor]
    args: tuple
    kwargs: dict[str, Any]
    input_nodes: list

    def arguments(self, tensors: Sequence[Tensor]) -> tuple[tuple, dict[str, Any]]:
        """The call's arguments with `tensors` put back in the order they were taken out."""
        saved = iter(tensors)
        args = tuple(next(saved) if value is _SAVED else value for value in self.args)
        kwargs = {key: next(saved) if value is _SAVED else value for key, value in self.kwargs.items()}
        return args, kwargs


class _OutputGradientTap(torch.autograd.Function):
    """Identity on a covered module's output; the backward passes ``dy`` to the active fused backward pass."""

    @staticmethod
    def forward(ctx, output: Tensor, probe: Tensor, call: _HookedCall, tensors: list[Tensor]) -> Tensor:
        ctx.save_for_backward(*tensors)
        ctx.call = call
        return output.view_as(output)

    @staticmethod
    def backward(ctx, output_grad: Tensor):
        call = ctx.call
        backward_pass = call.owner.active_pass
        if backward_pass is not None:
            args, kwargs = call.arguments(ctx.saved_tensors)
            backward_pass.add_module_gradients(call.module, call.params, args, kwargs, output_grad)
        return output_grad, None, None, None


class _BackwardPass:
    """The state of one fused backward: row coefficients ``C_{p(b)k}`` (scaled) and the buffers they fill."""

    def __init__(self, coefficients: Tensor, buffers: list[list[Tensor]], index_of: dict[int, int]) -> None:
        self.coefficients = coefficients
        self.buffers = buffers
        self.index_of = index_of
        self.workspace = _Workspace()
        self._rows: dict[int, Tensor] = {}

    def check_rows(self, rows: int) -> None:
        """Raise unless a forward pass of `rows` rows maps onto the N pairs (row b to pair ``b mod N``)."""
        num_pairs = self.coefficients.shape[0]
        if rows % num_pairs:
            raise ValueError(
                f"a forward pass had {rows} rows, not a multiple of the {num_pairs} pairs; the fused engine maps "
                "batch row b to pair b mod N."
            )

    def row_coefficients(self, rows: int) -> Tensor:
        """``[B, K]``: row b's coefficients ``C_{p(b)k}``."""
        if rows not in self._rows:
            self.check_rows(rows)
            self._rows[rows] = self.coefficients.repeat(rows // self.coefficients.shape[0], 1)
        return self._rows[rows]

    def targets(self, param: Tensor) -> list[Tensor]:
        """The K buffers that accumulate `param`'s per-objective gradients."""
        index = self.index_of[id(param)]
        return [objective[index] for objective in self.buffers]

    def add_module_gradients(
        self, module: nn.Module, params: list[Tensor], args: tuple, kwargs: dict[str, Any], output_grad: Tensor
    ) -> None:
        if _is_plain_linear(module):
            self._add_linear_gradients(module, args[0] if args else kwargs["input"], output_grad)
        else:
            self._add_recomputed_gradients(module, params, args, kwargs, output_grad)

    def _add_linear_gradients(self, module: nn.Linear, inputs: Tensor, output_grad: Tensor) -> None:
        rows, dtype = inputs.shape[0], module.weight.dtype
        self.check_rows(rows)
        coefficients = self.coefficients.to(dtype)
        x = inputs.reshape(rows, -1, inputs.shape[-1]).to(dtype)
        dy = output_grad.reshape(rows, -1, output_grad.shape[-1]).to(dtype)
        if module.weight.requires_grad:
            _add_linear_weight_gradients(self.targets(module.weight), x, dy, coefficients, self.workspace)
        if module.bias is not None and module.bias.requires_grad:
            group_sums = dy.sum(dim=1).unflatten(0, (-1, len(coefficients))).sum(dim=0)
            for k, target in enumerate(self.targets(module.bias)):
                target.addmv_(group_sums.T, coefficients[:, k])

    def _add_recomputed_gradients(
        self, module: nn.Module, params: list[Tensor], args: tuple, kwargs: dict[str, Any], output_grad: Tensor
    ) -> None:
        with torch.enable_grad():
            output = module.forward(*map(_detached, args), **{key: _detached(value) for key, value in kwargs.items()})
        output_grad = output_grad.to(output.dtype)
        coefficients = self.row_coefficients(output_grad.shape[0]).to(output.dtype)
        broadcast = (-1,) + (1,) * (output_grad.dim() - 1)
        num_objectives = coefficients.shape[1]
        per_objective = [
            torch.autograd.grad(
                output,
                params,
                output_grad * coefficients[:, k].view(broadcast),
                retain_graph=k < num_objectives - 1,
                allow_unused=True,
            )
            for k in range(num_objectives)
        ]
        for position, param in enumerate(params):
            for target, grads in zip(self.targets(param), per_objective):
                if grads[position] is not None:
                    target.add_(grads[position])


def row_rank_factors(coefficients: Tensor) -> tuple[Tensor, Tensor]:
    r"""Per-token coefficients as a few per-row ones: ``C_ntk = sum_r U_rnt A_rnk``, R as small as the rows allow.

    One backward pass through the layer taps can weight each *row* of the forward by its own K coefficients, but not
    each token: a layer's output at position s feeds every later token of its row, so its gradient
    ``sum_t C_ntk dv_nt/dy_ns`` mixes the tokens' coefficients (only at the output head does a position reach one
    token). So row n's T x K matrix ``C_n`` is factorised by its singular value decomposition
    ``C_n = sum_r (s_r u_r) v_r^T`` (in float64), and pass r backpropagates ``sum_nt U_rnt v_nt`` with the row
    coefficients ``A_rn = v_r``. R is the largest rank among the rows, singular values below
    ``max(T, K) eps s_max(C_n)`` counting as zero (numpy's ``matrix_rank`` rule; eps of the coefficients' dtype).
    GRPO's clipped policy-gradient loss on-policy (``old_logps = logps.detach()``, TRL's default) has
    ``C_ntk = -A_nk m_nt / Z`` (advantage of reward k times the token's loss weight), rank 1: one pass; TRL's KL term
    ``beta (1 - exp(ref_nt - v_nt)) m_nt / Z`` is the same for every reward and adds one rank.

    Args:
        coefficients: ``[N, T, K]``, ``C_ntk = dL_k / dv_nt``.

    Returns:
        ``U`` ``[R, N, T]`` (weights of the values in each pass) and ``A`` ``[R, N, K]`` (row coefficients of each
        pass), in the coefficients' dtype; ``R = 0`` when every coefficient is zero.
    """
    rows, tokens, num_objectives = coefficients.shape
    left, singular, right = torch.linalg.svd(coefficients.double(), full_matrices=False)
    tolerance = singular[:, :1] * max(tokens, num_objectives) * torch.finfo(coefficients.dtype).eps
    rank = int((singular > tolerance).sum(dim=1).max()) if rows else 0
    value_weights = (left[..., :rank] * singular[:, None, :rank]).permute(2, 0, 1)
    row_coefficients = right[:, :rank, :].permute(1, 0, 2)
    return value_weights.to(coefficients.dtype), row_coefficients.to(coefficients.dtype)


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, Tensor) else value


def _zero_if_none(gradient: Tensor | None, param: Tensor) -> Tensor:
    return torch.zeros_like(param) if gradient is None else gradient


class _Workspace:
    """Scratch tensors of one fused backward pass, reused by every layer it reaches.

    A fresh tensor of millions of elements per layer would be mapped and zero-filled by the operating system every
    time: on the CPU, forming the products of a layer into fresh memory took a third longer than into memory already
    in use.
    """

    def __init__(self) -> None:
        self._flat: dict[str, Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """An uninitialised tensor of `shape`, with the dtype and device of `like`, in the memory of the earlier
        tensors taken under `name` (whose contents it overwrites)."""
        numel = math.prod(shape)
        flat = self._flat.get(name)
        if flat is None or flat.numel() < numel or flat.dtype != like.dtype or flat.device != like.device:
            flat = self._flat[name] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return flat[:numel].view(shape)


def _add_linear_weight_gradients(
    targets: list[Tensor],
    x: Tensor,
    dy: Tensor,
    coefficients: Tensor,
    workspace: _Workspace,
    block_elements: int = ROW_PRODUCT_ELEMENTS,
) -> None:
    r"""``targets[k] += sum_b C[b mod N, k] sum_t dy[b, t]^T x[b, t]`` for x ``[B, T, in]``, dy ``[B, T, out]`` and
    the coefficients C ``[N, K]``, B a multiple of N.

    The rows that share coefficients share a product: group i (rows ``b = i mod N``; the two sequences of pair i in
    the preference trainer) has ``P_i = sum_{b = i mod N} sum_t dy_bt x_bt^T``, one matrix product over the group's
    tokens, and then ``targets[k] += sum_i C_ik P_i`` is one more product, ``C^T [K, N]`` times the ``P_i`` as rows
    ``[N, out * in]``. That costs ``T + K`` multiply-adds per row and weight element (``T`` tokens a row), against
    ``K T`` for weighting the rows first, K products over all tokens, which is used when cheaper (one objective, or
    one token a row; the smaller of ``x`` and ``dy`` is weighted). The ``P_i`` are formed for a block of output
    features at a time (at most `block_elements` elements, at least one feature: ``N x in``) in `workspace`.
    """
    rows, tokens, in_features = x.shape
    out_features = dy.shape[-1]
    groups, num_objectives = coefficients.shape
    if num_objectives * tokens <= tokens + num_objectives:
        row_weights = coefficients.repeat(rows // groups, 1).repeat_interleave(tokens, dim=0)
        flat_x, flat_dy = x.reshape(rows * tokens, in_features), dy.reshape(rows * tokens, out_features)
        for k, target in enumerate(targets):
            if in_features <= out_features:
                target.addmm_(flat_dy.T, flat_x * row_weights[:, k, None])
            else:
                target.addmm_((flat_dy * row_weights[:, k, None]).T, flat_x)
        return
    grouped_x = x.unflatten(0, (-1, groups))
    grouped_dy = dy.unflatten(0, (-1, groups))
    block = max(1, min(out_features, block_elements // (groups * in_features)))
    for start in range(0, out_features, block):
        stop = min(out_features, start + block)
        products = workspace.take("products", (groups, stop - start, in_features), like=x)
        torch.bmm(grouped_dy[0, :, :, start:stop].transpose(1, 2), grouped_x[0], out=products)
        for repeat in range(1, len(grouped_x)):
            products.baddbmm_(grouped_dy[repeat, :, :, start:stop].transpose(1, 2), grouped_x[repeat])
        combined = workspace.take("combined", (num_objectives, (stop - start) * in_features), like=x)
        torch.mm(coefficients.T, products.view(groups, -1), out=combined)
        for target, objective in zip(targets, combined):
            target[start:stop].add_(objective.view(stop - start, in_features))


def _is_plain_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


class FusedObjectiveGradients:
    """Hooks on a model's leaf modules that turn one backward pass into K per-objective gradients.

    Args:
        model: the module being trained; its covered leaf modules get forward hooks (until :meth:`remove_hooks`).
        params: the trainable parameters, in the order of the engine's gradient buffers.
    """

    def __init__(self, model: nn.Module, params: Sequence[Tensor]) -> None:
        if any(getattr(module, "gradient_checkpointing", False) for module in model.modules()):
            raise FusedEngineNotApplicable(
                "the fused engine hooks the layer calls of one forward pass, which gradient checkpointing repeats "
                "inside the backward pass; turn gradient checkpointing off or use engine=exact."
            )
        self.params = list(params)
        self.index_of = {id(param): index for index, param in enumerate(self.params)}
        self.names = {id(param): name for name, param in model.named_parameters(remove_duplicate=False)}
        self.probe = torch.zeros((), requires_grad=True)
        self.active_pass: _BackwardPass | None = None
        self._coverage_checked = False
        self._hook_handles: list[torch.utils.hooks.RemovableHandle] = []

        owned_by_leaf: dict[int, list[tuple[str, nn.Module]]] = {}
        owned_by_other: set[int] = set()
        for name, module in model.named_modules():
            is_leaf = next(module.children(), None) is None
            for param in module.parameters(recurse=False):
                if id(param) in self.index_of:
                    if is_leaf:
                        owned_by_leaf.setdefault(id(param), []).append((name, module))
                    else:
                        owned_by_other.add(id(param))
        self.covered = {key for key in owned_by_leaf if key not in owned_by_other}
        self.uncovered = [param for param in self.params if id(param) not in self.covered]
        hooked = {id(module): (name, module) for key in self.covered for name, module in owned_by_leaf[key]}
        for name, module in hooked.values():
            module_params = [param for param in module.parameters(recurse=False) if id(param) in self.covered]
            self._hook_handles.append(
                module.register_forward_hook(self._tap_hook(name, module, module_params), with_kwargs=True)
            )

    def remove_hooks(self) -> None:
        """Take the layer hooks off the model (it then behaves as if this object had never existed)."""
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles = []

    def _tap_hook(self, name: str, module: nn.Module, params: list[Tensor]):
        def tap(_module, args, kwargs, output):
            if not torch.is_grad_enabled():
                return None
            if not isinstance(output, Tensor):
                raise FusedEngineNotApplicable(
                    f"the fused engine hooks {name or 'the model'} ({type(module).__name__}), a module without "
                    f"submodules that owns trainable parameters, but it returned a {type(output).__name__}, not one "
                    "tensor; use engine=exact for this model."
                )
            if not output.requires_grad:
                return None
            tensors = [value for value in (*args, *kwargs.values()) if isinstance(value, Tensor)]
            call = _HookedCall(
                self,
                module,
                params,
                tuple(_SAVED if isinstance(value, Tensor) else value for value in args),
                {key: _SAVED if isinstance(value, Tensor) else value for key, value in kwargs.items()},
                [get_gradient_edge(tensor).node for tensor in tensors if tensor.requires_grad],
            )
            return _OutputGradientTap.apply(output, self.probe, call, tensors)

        return tap

    def accumulate(
        self,
        losses: Tensor,
        pair_values: Tensor,
        buffers: list[list[Tensor]],
        scale: float = 1.0,
    ) -> None:
        """Add ``scale * dL_k/dtheta`` to ``buffers[k]`` for every objective k, with one backward of the model per
        rank of the rows' coefficients (one, for a vector of pair values or on-policy GRPO losses).

        Args:
            losses: [K] objective losses, each a function of the parameters only through `pair_values`.
            pair_values: the values ``v`` of the same forward through which the losses see the model: [N], one per
                pair (the preference trainer's ``delta``), or [N, T], T per row (the RL trainer's per-token
                log-probabilities); batch row b of the forward belongs to row ``b mod N``.
            buffers: ``buffers[k][j]`` accumulates objective k's gradient of ``params[j]``.
            scale: factor on every gradient (1 / accumulation steps).
        """
        if pair_values is None:
            raise ValueError("the fused engine needs pair_values: the per-pair tensor through which the losses depend on the model.")
        if pair_values.ndim not in (1, 2) or not pair_values.requires_grad:
            raise ValueError(
                f"pair_values must be a differentiable vector [N] or matrix [N, T], got shape "
                f"{tuple(pair_values.shape)} (requires_grad={pair_values.requires_grad})."
            )
        self._check_losses_depend_only_on(losses, pair_values)
        num_objectives = losses.numel()
        coefficients = torch.stack(
            [
                _zero_if_none(grad, pair_values)
                for grad in (
                    torch.autograd.grad(losses[k], pair_values, retain_graph=True, allow_unused=True)[0]
                    if losses[k].requires_grad
                    else None
                    for k in range(num_objectives)
                )
            ],
            dim=-1,
        ).detach()
        if not self._coverage_checked:
            self._check_coverage(pair_values)
            self._coverage_checked = True
        if self.uncovered:
            for k in range(num_objectives):
                grads = torch.autograd.grad(
                    pair_values, self.uncovered, coefficients[..., k], retain_graph=True, allow_unused=True
                )
                for param, grad in zip(self.uncovered, grads):
                    if grad is not None:
                        buffers[k][self.index_of[id(param)]].add_(grad, alpha=scale)
        if pair_values.ndim == 1:
            value_weights, row_coefficients = torch.ones_like(pair_values)[None], coefficients[None]
        else:
            value_weights, row_coefficients = row_rank_factors(coefficients)
        passes = len(value_weights)
        for index in range(passes):
            self.active_pass = _BackwardPass(row_coefficients[index] * scale, buffers, self.index_of)
            try:
                torch.autograd.grad(
                    pair_values, self.probe, value_weights[index], retain_graph=index < passes - 1, allow_unused=True
                )
            finally:
                self.active_pass = None

    def _check_losses_depend_only_on(self, losses: Tensor, pair_values: Tensor) -> None:
        stop = get_gradient_edge(pair_values).node
        for node in _graph_nodes([losses.grad_fn], stop={stop}):
            variable = getattr(node, "variable", None)
            if variable is not None and id(variable) in self.index_of:
                raise FusedEngineNotApplicable(
                    f"the losses depend on {self.names.get(id(variable), 'a parameter')} other than through "
                    "pair_values; the fused engine needs every loss to be a function of pair_values only."
                )

    def _check_coverage(self, pair_values: Tensor) -> None:
        """Raise if a covered parameter enters the graph of `pair_values` other than through its module's call."""
        nodes = _graph_nodes([pair_values.grad_fn])
        allowed: dict[Any, set[int]] = {}
        for node in nodes:
            if isinstance(node, _OutputGradientTap._backward_cls):
                own = {id(param) for param in node.call.params}
                inside = _graph_nodes([node.next_functions[0][0]], stop=set(node.call.input_nodes))
                for inner in inside:
                    allowed.setdefault(inner, set()).update(own)
        for node in nodes:
            for child, _ in node.next_functions:
                variable = getattr(child, "variable", None)
                if variable is None or id(variable) not in self.covered:
                    continue
                if id(variable) not in allowed.get(node, ()):
                    raise FusedEngineNotApplicable(
                        f"{self.names.get(id(variable), 'a parameter')} enters the forward outside the call of the "
                        "module that owns it, so the fused engine's layer hooks miss part of its gradient; use "
                        "engine=exact for this model."
                    )


def _graph_nodes(roots: list, stop: set | None = None) -> set:
    """The autograd nodes reachable from `roots` (None entries skipped), not expanding past nodes in `stop`."""
    stop = stop or set()
    seen = set()
    stack = [node for node in roots if node is not None]
    while stack:
        node = stack.pop()
        if node in seen or node in stop:
            continue
        seen.add(node)
        stack.extend(child for child, _ in node.next_functions if child is not None)
    return seen
