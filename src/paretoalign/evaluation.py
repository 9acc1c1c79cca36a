r"""Per-objective metrics on held-out preference pairs.

For a policy ``pi`` and reference ``pi_ref`` the implicit reward margin of pair i is
``h_i = beta * ((log pi(y_a) - log pi_ref(y_a)) - (log pi(y_b) - log pi_ref(y_b)))``. Per objective k, over the
pairs labelled for k:

* preference accuracy: the share of pairs with ``S_ik h_i > 0`` (the policy moved towards the preferred
  response relative to the reference), a tie ``h_i = 0`` counting 1/2, so the reference itself scores 0.5;
* mean margin ``mean_i S_ik h_i``;
* the objective's preference loss ``L_k`` (:func:`paretoalign.losses.preference_losses`).
"""

from __future__ import annotations

import torch
from rich.progress import track
from torch import nn

from paretoalign.data import PreferenceCollator
from paretoalign.losses import preference_losses, preference_metrics

__all__ = ["dataset_logps", "preference_report"]


@torch.no_grad()
def dataset_logps(
    model: nn.Module,
    dataset,
    pad_token_id: int,
    batch_size: int = 8,
    average: bool = False,
    description: str = "scoring pairs",
) -> torch.Tensor:
    """Sequence log-probabilities of every pair's two responses under ``model``, shape [N, 2] (a, b), float64.

    ``dataset`` holds tokenised pairs (:func:`paretoalign.data.tokenize_preferences`). The model runs in eval mode
    and is returned to its previous mode.
    """
    from paretoalign.models import sequence_logps

    collator = PreferenceCollator(pad_token_id)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    columns = ["prompt_input_ids", "response_a_input_ids", "response_b_input_ids", "labels"]
    rows = dataset.select_columns(columns)
    results = []
    try:
        for start in track(range(0, len(rows), batch_size), description=description, transient=True):
            batch = collator([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
            logps = sequence_logps(
                model,
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["response_mask"].to(device),
                average=average,
            )
            results.append(logps.double().cpu().view(2, -1).T)
    finally:
        model.train(was_training)
    return torch.cat(results) if results else torch.zeros(0, 2, dtype=torch.float64)


def preference_report(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    labels: torch.Tensor,
    objective_names: list[str],
    beta: float,
    loss_type: str = "sigmoid",
) -> dict[str, dict[str, float]]:
    """Accuracy (ties count 1/2), mean margin, loss and pair count per objective (see the module docstring).

    ``policy_logps`` and ``reference_logps`` are [N, 2] (response a, response b); ``labels`` is the [N, K] matrix.
    """
    if policy_logps.shape != reference_logps.shape or policy_logps.ndim != 2 or policy_logps.shape[1] != 2:
        raise ValueError(
            f"policy and reference log-probabilities must both be [N, 2], got {tuple(policy_logps.shape)} "
            f"and {tuple(reference_logps.shape)}."
        )
    labels = torch.as_tensor(labels)
    if labels.shape != (policy_logps.shape[0], len(objective_names)):
        raise ValueError(f"labels must be [N, K] = [{policy_logps.shape[0]}, {len(objective_names)}].")
    logratios = policy_logps.double() - reference_logps.double()
    delta = logratios[:, 0] - logratios[:, 1]
    losses = preference_losses(delta, labels, beta, loss_type)
    metrics = preference_metrics(delta, labels, beta)
    report = {
        name: {
            "accuracy": float(metrics.accuracy[k]),
            "margin": float(metrics.margin[k]),
            "loss": float(losses[k]),
            "pairs": int(metrics.count[k]),
        }
        for k, name in enumerate(objective_names)
    }
    return report


def evaluate_trained(model_dir, config) -> dict[str, dict[str, float]]:
    """Held-out per-objective metrics of a policy written by a run (``<run>/model``) on ``config.eval_data``.

    The reference is the same weights with the adapter disabled for a LoRA adapter, else the base model named by
    ``config.model_name_or_path``.
    """
    from peft import PeftModel

    from paretoalign.models import load_policy, load_trained
    from paretoalign.trainers.preference import prepare_preference_data, resolve_model_path

    if config.eval_data is None:
        raise ValueError("eval_data is not set: give the held-out pairs to evaluate on.")
    policy, tokenizer = load_trained(model_dir, cache_dir=config.model_cache_dir)
    dataset, names = prepare_preference_data(
        config, config.eval_data, tokenizer, config.objectives, config.max_eval_pairs, "eval"
    )
    average = config.loss_type == "ipo"
    batch = config.per_device_eval_batch_size
    trained = dataset_logps(policy, dataset, tokenizer.pad_token_id, batch, average, "held-out pairs (trained)")
    if isinstance(policy, PeftModel):
        with policy.disable_adapter():
            reference = dataset_logps(policy, dataset, tokenizer.pad_token_id, batch, average, "held-out pairs (reference)")
    else:
        base, _ = load_policy(resolve_model_path(config.model_name_or_path), cache_dir=config.model_cache_dir)
        reference = dataset_logps(base, dataset, tokenizer.pad_token_id, batch, average, "held-out pairs (reference)")
    labels = torch.tensor(dataset["labels"])
    return preference_report(trained, reference, labels, names, config.beta, config.loss_type)
