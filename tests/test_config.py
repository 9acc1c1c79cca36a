"""Configs from a YAML file and the command line (paretoalign.config): file fields written in YAML resolve against
the YAML file's folder by their path kind, command-line values stay as given, unknown keys and renamed fields."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import pytest
import yaml

from paretoalign.rewards.specs import resolve_spec_paths
from paretoalign.config import ModelArguments, config_to_dict, field_help, load_yaml, parse_config
from paretoalign.trainers.preference import ParetoPreferenceConfig


@dataclass
class FileFields(ModelArguments):
    """One field of each path kind (``model_name_or_path`` is the ``model`` kind), and one that is no file."""

    output: str | None = field(default=None, metadata=field_help("A folder.", path="path"))
    pairs: dict | str | None = field(default=None, metadata=field_help("Pairs or objective -> pairs.", path="data"))
    rewards: list | str | None = field(default=None, metadata=field_help("Reward specs.", path="reward_spec"))
    judge: dict | str | None = field(default=None, metadata=field_help("One reward spec.", path="reward_spec"))
    oracle: dict | str | None = field(default=None, metadata=field_help("An oracle mapping.", path="reward_spec"))
    note: str | None = field(default=None, metadata=field_help("Free text, not a file."))


@pytest.fixture()
def folders(tmp_path, monkeypatch):
    """``(config folder, working directory)``: two different folders; the working directory is the current one."""
    config_dir, work_dir = tmp_path.resolve() / "configs", tmp_path.resolve() / "work"
    config_dir.mkdir()
    work_dir.mkdir()
    monkeypatch.chdir(work_dir)
    return config_dir, work_dir


def write_yaml(path, values: dict):
    path.write_text(yaml.safe_dump(values))
    return path


def test_path_fields_resolve_against_the_yaml_folder(folders):
    config_dir, _ = folders
    config = parse_config(FileFields, write_yaml(config_dir / "run.yaml", {
        "output": "runs/one", "model_cache_dir": "../cache", "note": "notes.txt",
    }), [])
    assert config.output == str(config_dir / "runs" / "one")
    assert config.model_cache_dir == str(config_dir.parent / "cache")
    assert config.note == "notes.txt"  # not a file field


def test_absolute_and_builtin_paths_are_left_as_they_are(folders):
    config_dir, work_dir = folders
    config = parse_config(FileFields, write_yaml(config_dir / "run.yaml", {
        "output": str(work_dir / "out"), "pairs": "builtin:hh-rlhf/helpful/train.jsonl",
    }), [])
    assert config.output == str(work_dir / "out")
    assert config.pairs == "builtin:hh-rlhf/helpful/train.jsonl"


def test_data_fields_resolve_a_path_or_each_path_of_a_mapping(folders):
    config_dir, _ = folders
    single = parse_config(FileFields, write_yaml(config_dir / "one.yaml", {"pairs": "data/pairs.jsonl"}), [])
    assert single.pairs == str(config_dir / "data" / "pairs.jsonl")
    mapping = parse_config(FileFields, write_yaml(config_dir / "two.yaml", {
        "pairs": {"helpful": "helpful.jsonl", "harmless": "builtin:hh-rlhf/harmless/train.jsonl"},
    }), [])
    assert mapping.pairs == {"helpful": str(config_dir / "helpful.jsonl"),
                             "harmless": "builtin:hh-rlhf/harmless/train.jsonl"}


def test_a_model_resolves_only_when_it_exists_beside_the_yaml_file(folders):
    config_dir, _ = folders
    (config_dir / "tiny-model").mkdir()
    (config_dir / "policy.gguf").write_bytes(b"")
    for name, expected in [
        ("tiny-model", str(config_dir / "tiny-model")),
        ("policy.gguf", str(config_dir / "policy.gguf")),
        ("builtin:smollm2", "builtin:smollm2"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"),  # no such folder here
        ("missing.gguf", "missing.gguf"),
    ]:
        config = parse_config(FileFields, write_yaml(config_dir / "run.yaml", {"model_name_or_path": name}), [])
        assert config.model_name_or_path == expected, name


def test_reward_specs_resolve_their_file_functions_and_oracle_paths(folders):
    config_dir, _ = folders
    (config_dir / "rm").mkdir()  # a reward model's folder beside the YAML file
    config = parse_config(FileFields, write_yaml(config_dir / "run.yaml", {
        "rewards": [
            {"function": "my_rewards.py:politeness", "scale": 2},
            {"function": "my_package.rewards:politeness"},
            {"name": "length", "target": 40},
            {"sum": [{"weight": 0.5, "function": "sub/terms.py:first"}, {"weight": 0.5, "name": "format"}]},
            {"name": "reward_model", "path": "rm"},
        ],
        "judge": "{function: 'judge.py:score', label: judge}",
        "oracle": {"type": "labels", "path": "labels.jsonl"},
    }), [])
    assert config.rewards == [
        {"function": f"{config_dir / 'my_rewards.py'}:politeness", "scale": 2},
        {"function": "my_package.rewards:politeness"},  # a module, not a file
        {"name": "length", "target": 40},
        {"sum": [{"weight": 0.5, "function": f"{config_dir / 'sub' / 'terms.py'}:first"},
                 {"weight": 0.5, "name": "format"}]},
        {"name": "reward_model", "path": str(config_dir / "rm")},
    ]
    assert config.judge == {"function": f"{config_dir / 'judge.py'}:score", "label": "judge"}
    assert config.oracle == {"type": "labels", "path": str(config_dir / "labels.jsonl")}

    human = parse_config(FileFields, write_yaml(config_dir / "human.yaml", {
        "oracle": {"type": "human", "answers": "answers.jsonl"},
    }), [])
    assert human.oracle == {"type": "human", "answers": str(config_dir / "answers.jsonl")}
    gold = parse_config(FileFields, write_yaml(config_dir / "gold.yaml", {
        "oracle": {"type": "reward", "function": "gold.py:score"},
    }), [])
    assert gold.oracle == {"type": "reward", "function": f"{config_dir / 'gold.py'}:score"}


def test_command_line_values_stay_relative_to_the_working_directory(folders):
    config_dir, _ = folders
    (config_dir / "tiny-model").mkdir()
    config_file = write_yaml(config_dir / "run.yaml", {"output": "yaml-out", "pairs": "yaml.jsonl"})
    config = parse_config(FileFields, config_file, [
        "--output", "cli-out", "--pairs", "cli.jsonl", "--model_name_or_path", "tiny-model",
        "--model_cache_dir", "cache", "--judge", "{function: 'judge.py:score'}",
    ])
    assert (config.output, config.pairs, config.model_name_or_path, config.model_cache_dir) == (
        "cli-out", "cli.jsonl", "tiny-model", "cache"
    )
    assert config.judge == "{function: 'judge.py:score'}"  # read as given; the config that uses it parses it

    preference = parse_config(ParetoPreferenceConfig, write_yaml(config_dir / "pairs.yaml", {
        "train_data": "train.jsonl", "report_to": "none", "use_cpu": True,
    }), ["--eval_data", "a=held-out/a.jsonl,b=held-out/b.jsonl"])
    assert preference.train_data == str(config_dir / "train.jsonl")
    assert preference.eval_data == {"a": "held-out/a.jsonl", "b": "held-out/b.jsonl"}


def test_the_command_line_overrides_the_yaml_file(folders):
    config_dir, _ = folders
    config = parse_config(FileFields, write_yaml(config_dir / "run.yaml", {"note": "from yaml", "output": "o"}),
                          ["--note", "from the command line"])
    assert config.note == "from the command line" and config.output == str(config_dir / "o")


def test_an_unknown_yaml_key_names_the_file_and_the_key(folders):
    config_dir, _ = folders
    config_file = write_yaml(config_dir / "typo.yaml", {"output": "o", "outptu": "p", "nte": "q"})
    with pytest.raises(ValueError, match=re.escape(f"{config_file}: unknown config field(s) ['nte', 'outptu'] for "
                                                   "FileFields")):
        parse_config(FileFields, config_file, [])


def test_the_old_field_name_model_is_read_with_a_future_warning(folders):
    config_dir, _ = folders
    (config_dir / "tiny-model").mkdir()
    config_file = write_yaml(config_dir / "old.yaml", {"model": "tiny-model"})
    with pytest.warns(FutureWarning, match=re.escape(f"{config_file}: the field 'model' is now called "
                                                     "'model_name_or_path'")):
        config = parse_config(FileFields, config_file, [])
    assert config.model_name_or_path == str(config_dir / "tiny-model")  # resolved as the model kind

    for argv in (["--model", "org/name"], ["--model=org/name"]):
        with pytest.warns(FutureWarning, match="--model is now called --model_name_or_path"):
            config = parse_config(FileFields, None, argv)
        assert config.model_name_or_path == "org/name", argv


def test_the_new_field_name_gives_no_warning(folders):
    config_dir, _ = folders
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        config = parse_config(FileFields, write_yaml(config_dir / "new.yaml", {"model_name_or_path": "org/a"}),
                              ["--model_name_or_path", "org/b"])
    assert config.model_name_or_path == "org/b"


def test_both_names_of_a_renamed_field_are_an_error(folders):
    config_dir, _ = folders
    config_file = write_yaml(config_dir / "both.yaml", {"model": "org/a", "model_name_or_path": "org/b"})
    with pytest.raises(ValueError, match=re.escape(f"{config_file}: give 'model_name_or_path' only ('model' is its "
                                                   "older name)")):
        parse_config(FileFields, config_file, [])
    for argv in (["--model", "org/a", "--model_name_or_path", "org/b"], ["--model_name_or_path=org/b", "--model=a"]):
        with pytest.raises(ValueError, match=re.escape("give --model_name_or_path only (--model is its older name)")):
            parse_config(FileFields, None, argv)


def test_load_yaml_names_the_file_at_fault(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found: .*absent.yaml"):
        load_yaml(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="list.yaml: a config file must be a mapping of field: value, got list"):
        load_yaml(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match="broken.yaml: not valid YAML"):
        load_yaml(tmp_path / "broken.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml") == {}


def test_config_to_dict_keeps_the_plain_values(folders):
    config_dir, _ = folders
    config = parse_config(FileFields, write_yaml(config_dir / "run.yaml", {"pairs": {"a": "a.jsonl"}}),
                          ["--note", "n"])
    assert config_to_dict(config) == {
        "model_name_or_path": "builtin:smollm2", "model_cache_dir": None, "model_revision": None,
        "torch_dtype": "float32", "attn_implementation": None, "trust_remote_code": False, "load_in_4bit": False,
        "load_in_8bit": False, "bnb_4bit_quant_type": "nf4", "use_bnb_nested_quant": False, "output": None,
        "pairs": {"a": str(config_dir / "a.jsonl")}, "rewards": None, "judge": None, "oracle": None, "note": "n",
    }


def test_a_path_kind_must_be_known():
    with pytest.raises(ValueError, match="path kind must be one of"):
        field_help("A file.", path="folder")


def test_a_reward_model_path_is_a_folder_beside_the_yaml_or_a_hub_id(tmp_path):
    (tmp_path / "local-rm").mkdir()
    specs = [{"name": "reward_model", "path": "local-rm"}, {"name": "reward_model", "path": "OpenAssistant/rm"}]
    assert resolve_spec_paths(specs, tmp_path) == [
        {"name": "reward_model", "path": str(tmp_path / "local-rm")},
        {"name": "reward_model", "path": "OpenAssistant/rm"},
    ]


def test_a_dataset_mapping_resolves_its_dataset_only_when_that_folder_is_beside_the_yaml_file(folders):
    config_dir, _ = folders
    (config_dir / "prefs-clone").mkdir()
    config = parse_config(FileFields, write_yaml(config_dir / "run.yaml", {
        "pairs": {"dataset": "prefs-clone", "split": "test"},
        "output": {"dataset": "org/prompts", "name": "en", "revision": "v1"},
    }), [])
    assert config.pairs == {"dataset": str(config_dir / "prefs-clone"), "split": "test"}
    assert config.output == {"dataset": "org/prompts", "name": "en", "revision": "v1"}  # a Hub id, kept
    by_objective = parse_config(FileFields, write_yaml(config_dir / "two.yaml", {
        "pairs": {"helpful": {"dataset": "prefs-clone"}, "harmless": {"dataset": "org/harmless", "split": "train"}},
    }), [])
    assert by_objective.pairs == {"helpful": {"dataset": str(config_dir / "prefs-clone")},
                                  "harmless": {"dataset": "org/harmless", "split": "train"}}


def test_a_dataset_mapping_is_written_as_yaml_text_on_the_command_line(folders):
    config = parse_config(FileFields, None, ["--pairs", "{dataset: org/prefs, split: test}", "--output", "out"])
    assert config.pairs == {"dataset": "org/prefs", "split": "test"} and config.output == "out"
    preference = parse_config(ParetoPreferenceConfig, None, [
        "--train_data", "{helpful: {dataset: org/helpful}}", "--eval_prompts", "{dataset: org/prompts}",
        "--output_dir", "out", "--report_to", "none",
    ])
    assert preference.train_data == {"helpful": {"dataset": "org/helpful"}}
    assert preference.eval_prompts == {"dataset": "org/prompts"}
