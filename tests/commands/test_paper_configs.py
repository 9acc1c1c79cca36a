"""The paper's experiments as shipped configs (examples/paper/): every one parses, and the one-GPU Qwen3-0.6B run goes
end to end by Hub ids, offline, through the Hugging Face caches, on a tiny model and a tiny clone of the dataset
standing in for Qwen/Qwen3-0.6B and RACOo/RedditSummary-Alignment."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import yaml

from paretoalign.cli import main
from paretoalign.config import parse_config
from paretoalign.trainers.preference import ParetoPreferenceConfig

PAPER = Path(__file__).resolve().parents[2] / "examples" / "paper"


def reddit_row(index, quality, verbosity):
    request = {"role": "user", "content": f"Subreddit: r/dogs\n\nPOST: my dog {index} ate my homework.\n\n"
                                          "Please directly output your summarization."}
    return {"Summary_A": [request, {"role": "assistant", "content": f"Dog {index} ate homework."}],
            "Summary_B": [request, {"role": "assistant", "content": f"A dog, number {index}, ate all of it."}],
            "Quality": quality, "Verbosity": verbosity}


@pytest.mark.parametrize("name", sorted(path.name for path in PAPER.glob("*.yaml")))
def test_every_paper_config_parses(name):
    config = parse_config(ParetoPreferenceConfig, str(PAPER / name), ["--use_cpu", "true", "--bf16", "false"])
    assert config.beta == 0.2 and config.cagrad_c == 0.4 and config.clip and config.weighting == "raco"
    assert config.learning_rate == 2e-5 and config.lr_scheduler_type == "cosine" and config.warmup_steps == 0.1
    assert config.max_length == 2048 and config.max_prompt_length == 1536
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps == 64
    assert config.torch_dtype == "bfloat16" and not config.use_lora and config.gradient_checkpointing


def test_the_paper_evaluation_samples_and_scores_with_both_judges():
    config = parse_config(ParetoPreferenceConfig, str(PAPER / "raco_reddit_2obj.yaml"),
                          ["--use_cpu", "true", "--bf16", "false"])
    assert config.decoding == "sampled (temperature 0.6, top_p 1, 1 per prompt, seed 0)"
    assert config.eval_max_new_tokens == 512
    quality, faithfulness = config.eval_rewards
    assert (quality["path"], quality["template"]) == ("Tristan/gpt2_reward_summarization", "{completion} {bos} {prompt}")
    assert (faithfulness["path"], faithfulness["label_index"]) == ("CogComp/bart-faithful-summary-detector", 1)


def test_the_one_gpu_reddit_run_goes_end_to_end_by_hub_ids_offline(
    tmp_path, hub_cache, make_tiny_llama, tiny_tokenizer, datasets_cache, write_hub_dataset, cache_hub_dataset,
    monkeypatch,
):
    hub_cache("Qwen/Qwen3-0.6B", make_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer)
    clone = write_hub_dataset(tmp_path / "RedditSummary-Alignment", {  # the cache names files after the folder
        "train_conflicted": [reddit_row(i, "A" if i % 2 else "B", "B" if i % 2 else "A") for i in range(4)],
        "val": [reddit_row(10, "A", "A"), reddit_row(11, "B", "A"), reddit_row(12, "tie", "B")],
    }, config_name="pairs")
    cache_hub_dataset("RACOo/RedditSummary-Alignment", clone, "pairs")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    output = tmp_path / "run"
    shrink = ["--use_cpu", "true", "--bf16", "false", "--torch_dtype", "float32", "--gradient_checkpointing", "false",
              "--max_length", "96", "--max_prompt_length", "64", "--per_device_train_batch_size", "2",
              "--gradient_accumulation_steps", "1", "--max_steps", "2", "--report_to", "none",
              "--save_strategy", "no", "--output_dir", str(output)]
    assert main(["train", "--config", str(PAPER / "raco_reddit_2obj_qwen3_0.6b.yaml"), *shrink]) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["objectives"] == ["quality", "verbosity"] and metrics["weights"] == [0.8, 0.2]
    assert metrics["after"]["quality"]["pairs"] == 2 and metrics["after"]["verbosity"]["pairs"] == 3
    saved = yaml.safe_load((output / "config.yaml").read_text())
    assert saved["model_name_or_path"] == "Qwen/Qwen3-0.6B"
    assert saved["train_data"] == {"preset": "reddit_summary", "split": "train_conflicted"}
