"""The MkDocs hook that writes the configuration reference: tables of a config dataclass's own fields."""

import importlib.util
from pathlib import Path

import pytest
from mkdocs.exceptions import PluginError

HOOK_PATH = Path(__file__).resolve().parents[2] / "docs" / "hooks" / "config_fields.py"


@pytest.fixture(scope="module")
def hook():
    spec = importlib.util.spec_from_file_location("config_fields_hook", HOOK_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_preference_config_table_lists_own_fields_and_links_the_training_arguments(hook):
    table = hook.replace_markers(
        "<!-- config-fields: paretoalign.trainers.preference:ParetoPreferenceConfig -->", "configuration.md"
    )
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    names = [row.split("`")[1] for row in rows]
    assert names[0] == "model_name_or_path"
    assert {"weighting", "cagrad_c", "lora_r", "output_dir", "max_consecutive_skipped_steps"} <= set(names)
    assert "learning_rate" not in names and "per_device_train_batch_size" not in names
    assert "| `weighting` | `str` | `raco` |" in table
    assert "| `lora_target_modules` | `list[str]` | `[q_proj, k_proj, v_proj, o_proj]` |" in table
    assert "transformers.TrainingArguments" in table


def test_grpo_and_transfer_configs(hook):
    grpo = hook.fields_table(hook.load_target("paretoalign.trainers.grpo:MultiRewardGRPOConfig"))
    assert "| `rewards` |" in grpo and "| `reward_weights` |" not in grpo and "trl.GRPOConfig" in grpo
    transfer = hook.fields_table(hook.load_target("paretoalign.trainers.transfer:TransferConfig"))
    assert "| `label_budget` | `int` | `1000` |" in transfer and "accepted too" not in transfer


def test_help_text_is_escaped_outside_code_spans(hook):
    assert hook.markdown_text("a | b <spec> `x | y` c_d") == r"a \| b &lt;spec&gt; `x | y` c\_d"


def test_a_bad_marker_names_the_page_and_the_target(hook):
    with pytest.raises(PluginError, match=r"configuration.md: .*paretoalign.trainers.grpo:NoSuchConfig"):
        hook.replace_markers("<!-- config-fields: paretoalign.trainers.grpo:NoSuchConfig -->", "configuration.md")
    with pytest.raises(PluginError, match="not of the form"):
        hook.replace_markers("<!-- config-fields: paretoalign.trainers.grpo -->", "configuration.md")
