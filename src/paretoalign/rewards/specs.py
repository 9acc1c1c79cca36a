r"""Reward specs: the one grammar in which configs name a reward function, and the builder that makes it.

``paretoalign rl`` (``rewards``), ``paretoalign eval`` (``eval_rewards``, ``eval_judge``) and ``paretoalign
transfer`` (``sources``, ``eval_reward``, the reward oracle) all write rewards this way.

**Grammar.** A spec is a mapping with exactly one of

* ``name``: a built-in reward (a key of :data:`paretoalign.rewards.builtin.REWARDS`); every other key is a
  parameter of :func:`paretoalign.rewards.builtin.get_reward`: ``{name: length, target: 40, unit: words}``;
* ``function``: ``'module:callable'`` or ``'path/to/file.py:callable'``; every other key is a keyword argument
  bound to the callable: ``{function: 'my_rewards.py:politeness', scale: 2}``;
* ``sum``: a non-empty list of terms ``{weight: w_i, <spec>}``, the reward ``r = sum_i w_i r_i``
  (:class:`WeightedSumReward`);

and an optional ``label`` (a non-empty string), the reward's name in logs and reports (:func:`reward_label`).
Text is read too, giving the same mapping: ``'NAME'``, ``'NAME:key=value,key=value'`` (values read as YAML
scalars) and a mapping written as YAML, ``'{name: length, target: 40}'``.

**Built rewards** follow the protocol of :mod:`paretoalign.rewards.builtin`: ``reward(prompts, completions,
**kwargs)`` returns one number or ``None`` per completion. :func:`build_reward` wraps every reward in
:func:`checked_reward_function`, so a reward that raises or returns anything else stops with a
:class:`RewardFunctionError` naming it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import yaml
from trl.trainer.utils import get_callable_name

from paretoalign.models import resolve_model
from paretoalign.rewards.builtin import REWARDS, RewardFunction, get_reward

__all__ = [
    "RewardFunctionError", "WeightedSumReward", "build_reward", "build_rewards", "checked_reward_function",
    "parse_key_values", "parse_reward_spec", "parse_reward_specs", "resolve_spec_paths", "reward_label", "scores_of",
]

SPEC_KINDS = ("name", "function", "sum")
"""The keys of which a reward spec has exactly one."""

MODEL_REWARDS = ("reward_model", "pair_classifier")
"""Built-in rewards whose ``path`` names a model: a local folder or a Hugging Face Hub id."""

PATH_KEYS = ("path", "answers")
"""Keys whose values are file paths (a reward model's directory, an oracle's labels or answers file)."""


class RewardFunctionError(ValueError):
    """A reward function raised, or returned something other than one number or None per completion."""


def _yaml_scalar(text: str) -> Any:
    """``text`` read as YAML (``40`` -> 40, ``true`` -> True, ``0.5`` -> 0.5), or as it is when it is not YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_key_values(text: str, where: str) -> dict[str, Any]:
    """``'key=value,key=value'`` as ``{key: value, ...}``, each value read as a YAML scalar.

    Blank items are skipped, so ``''`` gives ``{}``. Errors (an item without ``=`` or without a key, a key given
    twice) name ``where``.
    """
    values: dict[str, Any] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, separator, value = item.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ValueError(f"{where}: expected key=value pairs separated by commas, could not read {item!r}.")
        if key in values:
            raise ValueError(f"{where}: {key!r} is given twice in {text!r}.")
        values[key] = _yaml_scalar(value.strip())
    return values


def _spec_from_text(text: str, where: str) -> Any:
    """A spec written as text: a YAML mapping ``'{...}'``, or ``'NAME'`` / ``'NAME:key=value,...'``."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return yaml.safe_load(stripped)
        except yaml.YAMLError as error:
            raise ValueError(f"{where}: not valid YAML ({error}).") from error
    name, _, params = stripped.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"{where}: empty reward name in {text!r}.")
    if params.strip() and "=" not in params:
        raise ValueError(
            f"{where}: {text!r} reads as 'NAME:key=value,...' and has no key=value; "
            f"write a function as {{function: '{stripped}'}}."
        )
    values = parse_key_values(params, where)
    if "name" in values:
        raise ValueError(f"{where}: {text!r} gives the name twice, before ':' and as name=.")
    return {"name": name, **values}


def _function_reference(value: Any, where: str) -> tuple[str, str]:
    """``'module:callable'`` or ``'path/to/file.py:callable'`` as (module or file, callable name)."""
    location, separator, attribute = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not separator or not location.strip() or not attribute.strip():
        raise ValueError(
            f"{where}: 'function' must be 'module:callable' or 'path/to/file.py:callable', got {value!r}."
        )
    return location.strip(), attribute.strip()


def _sum_terms(terms: Any, where: str) -> list[dict[str, Any]]:
    """The terms of a ``sum`` spec, each ``{weight: w, <spec>}`` with its spec parsed (errors name ``where.sum[i]``)."""
    if not isinstance(terms, list) or not terms:
        raise ValueError(
            f"{where}: 'sum' must be a non-empty list of {{weight: w, <reward spec>}} terms, got {terms!r}."
        )
    parsed = []
    for index, term in enumerate(terms):
        term_where = f"{where}.sum[{index}]"
        if not isinstance(term, Mapping):
            raise ValueError(f"{term_where}: a term is a mapping {{weight: w, <reward spec>}}, got {term!r}.")
        if "weight" not in term:
            raise ValueError(f"{term_where}: a term needs a 'weight', got keys {sorted(map(str, term))}.")
        weight = term["weight"]
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
            raise ValueError(f"{term_where}: 'weight' must be a finite number, got {weight!r}.")
        rest = {key: value for key, value in term.items() if key != "weight"}
        parsed.append({"weight": weight, **parse_reward_spec(rest, term_where)})
    return parsed


def parse_reward_spec(item: Any, where: str) -> dict[str, Any]:
    """One reward spec (see the module docstring) checked and returned as a new mapping; nothing is built or imported.

    ``'length:target=40'``, ``'{name: length, target: 40}'`` and ``{name: length, target: 40}`` all give
    ``{'name': 'length', 'target': 40}``. A ``sum`` spec comes back with each term parsed. Errors name ``where``
    (``where.sum[i]`` inside a sum) and show what was given.

    Raises:
        ValueError: not a mapping or text; keys that are not strings; not exactly one of ``name``, ``function``,
            ``sum``; an unknown built-in name; a ``function`` not written ``module:callable`` or
            ``file.py:callable``; a ``sum`` that is not a non-empty list of weighted terms, or with other keys;
            a ``label`` that is not a non-empty string.
    """
    if isinstance(item, str):
        item = _spec_from_text(item, where)
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: a reward spec is a mapping such as {{name: length}} or a name, got {item!r}.")
    spec = dict(item)
    for key in spec:
        if not isinstance(key, str):
            raise ValueError(f"{where}: the keys of a reward spec are strings, got {key!r}.")
    kinds = [key for key in SPEC_KINDS if key in spec]
    if len(kinds) != 1:
        raise ValueError(
            f"{where}: a reward spec needs exactly one of 'name', 'function' or 'sum', got keys {sorted(spec)}."
        )
    if "label" in spec and (not isinstance(spec["label"], str) or not spec["label"].strip()):
        raise ValueError(f"{where}: 'label' must be a non-empty string, got {spec['label']!r}.")
    if "name" in spec:
        if not isinstance(spec["name"], str) or spec["name"] not in REWARDS:
            raise ValueError(f"{where}: unknown reward {spec['name']!r}; valid rewards: {', '.join(REWARDS)}.")
    elif "function" in spec:
        _function_reference(spec["function"], where)
    else:
        extra = sorted(set(spec) - {"sum", "label"})
        if extra:
            raise ValueError(f"{where}: a 'sum' spec takes only 'sum' and 'label', got also {extra}.")
        spec["sum"] = _sum_terms(spec["sum"], where)
    return spec


def reward_label(spec: dict) -> str:
    """The name of a parsed spec's reward in logs and reports: its ``label``, else its ``name``, else the callable's
    name (after the last ``':'`` of ``function``), else ``"sum"``."""
    if "label" in spec:
        return spec["label"]
    if "name" in spec:
        return spec["name"]
    if "function" in spec:
        return spec["function"].rpartition(":")[2].strip()
    return "sum"


def _check_numbers(values: Sequence, where: str, what: str) -> None:
    """Raise :class:`RewardFunctionError` at the first value that is neither a real number nor ``None``."""
    for position, value in enumerate(values):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise RewardFunctionError(
                f"{where} returned {value!r} ({type(value).__name__}) for completion {position}; "
                f"{what} must be numbers or None."
            )


def checked_reward_function(function: Callable, name: str | None = None) -> Callable:
    """Wrap a reward function so that an exception or a malformed result names it.

    The result must hold one value per completion, each a real number or ``None`` (a tensor is read as a list);
    anything else raises :class:`RewardFunctionError` with the name, the expected and the returned length or the
    offending value, and so does an exception raised by the function. The wrapper's ``__name__`` (TRL's log key,
    ``rewards/<__name__>/mean``) is ``name``, by default TRL's display name of the function
    (:func:`trl.trainer.utils.get_callable_name`: through ``functools.partial``, a function's ``__name__``, an
    instance's class name).
    """
    name = get_callable_name(function) if name is None else name

    def checked(*args, **kwargs):
        completions = kwargs.get("completions", args[1] if len(args) > 1 else None)
        expected = len(completions) if completions is not None else None
        try:
            values = function(*args, **kwargs)
        except RewardFunctionError:
            raise
        except Exception as error:
            raise RewardFunctionError(f"reward function {name!r} raised {type(error).__name__}: {error}") from error
        if isinstance(values, torch.Tensor):
            values = values.tolist()
        if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
            raise RewardFunctionError(
                f"reward function {name!r} must return a list with one reward per completion, "
                f"got {type(values).__name__}."
            )
        if expected is not None and len(values) != expected:
            raise RewardFunctionError(
                f"reward function {name!r} returned {len(values)} rewards for {expected} completions "
                f"(expected {expected}, got {len(values)})."
            )
        _check_numbers(values, f"reward function {name!r}", "rewards")
        return list(values)

    checked.__name__ = name
    checked.__qualname__ = name
    checked.__doc__ = getattr(function, "__doc__", None)
    checked.__wrapped__ = function
    return checked


def scores_of(values: Sequence, expected: int, where: str) -> list[float | None]:
    """The ``expected`` scores a reward returned, as floats, with ``None``, NaN and +-inf as ``None`` ("not scored").

    Raises:
        RewardFunctionError: a count other than ``expected``, or a value that is not a real number or ``None``
            (both naming ``where``).
    """
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    values = list(values)
    if len(values) != expected:
        raise RewardFunctionError(f"{where} returned {len(values)} scores for {expected} completions.")
    _check_numbers(values, where, "scores")
    return [None if value is None or not math.isfinite(value) else float(value) for value in values]


class WeightedSumReward:
    """``r(x, y) = sum_i w_i r_i(x, y)``; ``None`` where any term is ``None`` (or NaN / inf: that term could not
    score the completion)."""

    def __init__(self, terms: Sequence[tuple[float, RewardFunction]]) -> None:
        if not terms:
            raise ValueError("a 'sum' reward needs at least one term.")
        self.terms = [(float(weight), reward) for weight, reward in terms]

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        totals: list[float | None] = [0.0] * len(completions)
        for weight, reward in self.terms:
            where = f"the 'sum' term {get_callable_name(reward)!r}"
            scores = scores_of(reward(prompts, completions, **kwargs), len(completions), where)
            totals = [None if t is None or s is None else t + weight * s for t, s in zip(totals, scores)]
        return totals


def _module_from_file(path: Path) -> ModuleType:
    """The file ``path`` executed as a module of its own (not entered in ``sys.modules``)."""
    module_spec = importlib.util.spec_from_file_location(f"paretoalign_user_rewards_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _import_callable(reference: str, where: str) -> Callable:
    """The callable ``'module:callable'`` (imported by module name) or ``'path/to/file.py:callable'`` (from the
    file, executed as a module of its own)."""
    location, attribute = _function_reference(reference, where)
    from_file = location.endswith(".py")
    if from_file and not Path(location).is_file():
        raise FileNotFoundError(f"{where}: reward function file not found: {location}")
    try:
        module = _module_from_file(Path(location)) if from_file else importlib.import_module(location)
    except Exception as error:
        raise ValueError(f"{where}: cannot import module {location!r} ({type(error).__name__}: {error}).") from error
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"{where}: {location!r} has no callable {attribute!r}.")
    return function


def _built_reward(spec: dict[str, Any], where: str) -> RewardFunction:
    """The reward function of a parsed spec, unchecked."""
    params = {key: value for key, value in spec.items() if key not in (*SPEC_KINDS, "label")}
    if "name" in spec:
        try:
            return get_reward(spec["name"], **params)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{where}: cannot build reward {spec['name']!r}: {error}") from error
        except (TypeError, ValueError, KeyError) as error:
            raise ValueError(f"{where}: cannot build reward {spec['name']!r}: {error}") from error
    if "function" in spec:
        function = _import_callable(spec["function"], where)
        return functools.partial(function, **params) if params else function
    terms = []
    for index, term in enumerate(spec["sum"]):
        term_spec = {key: value for key, value in term.items() if key != "weight"}
        reward = _built_reward(term_spec, f"{where}.sum[{index}]")
        terms.append((term["weight"], checked_reward_function(reward, name=reward_label(term_spec))))
    return WeightedSumReward(terms)


def build_reward(spec: Any, where: str) -> Callable:
    """The reward function of a spec (any accepted form, parsed by :func:`parse_reward_spec`).

    ``name``: ``get_reward(name, **params)``; ``function``: the callable imported (a ``.py`` path from the file),
    with the other keys bound as keyword arguments; ``sum``: a :class:`WeightedSumReward` of its built terms. The
    result is :func:`checked_reward_function` named :func:`reward_label` of the spec.

    Raises:
        ValueError: an invalid spec, a built-in reward that rejects its parameters, a module that cannot be
            imported, no such callable in it (all naming ``where``).
        FileNotFoundError: a ``file.py`` or a reward-model directory that does not exist.
    """
    parsed = parse_reward_spec(spec, where)
    return checked_reward_function(_built_reward(parsed, where), name=reward_label(parsed))


def parse_reward_specs(specs: Sequence[Any], where: str) -> list[dict[str, Any]]:
    """A list of specs, each parsed by :func:`parse_reward_spec` (errors name ``where[i]``), with distinct labels.

    Raises:
        ValueError: ``specs`` is not a list, a spec is invalid, or two specs share a :func:`reward_label` (the
            error lists the shared names and asks to "give each a distinct 'label'").
    """
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        raise ValueError(f"{where}: expected a list of reward specs, got {specs!r}.")
    parsed = [parse_reward_spec(spec, f"{where}[{index}]") for index, spec in enumerate(specs)]
    labels = [reward_label(spec) for spec in parsed]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"{where} share the name(s) {duplicates}; give each a distinct 'label'.")
    return parsed


def build_rewards(specs: Sequence[Any], where: str) -> dict[str, Callable]:
    """Label -> built reward (:func:`build_reward`) for a list of specs, in order; errors name ``where[i]``.

    Every spec is parsed and the labels are checked distinct (:func:`parse_reward_specs`) before anything is built.
    """
    parsed = parse_reward_specs(specs, where)
    return {reward_label(spec): build_reward(spec, f"{where}[{index}]") for index, spec in enumerate(parsed)}


def _absolute(path: str, base: Path) -> str:
    return path if Path(path).is_absolute() else os.path.normpath(base / path)


def resolve_spec_paths(value: Any, base: Path) -> Any:
    """A spec, a list of specs or an oracle mapping with its relative file paths made absolute against ``base``.

    Resolved: the file part of ``function: 'file.py:callable'`` and the string values of the keys ``path`` and
    ``answers``, at any depth (``sum`` terms, lists); the ``path`` of a model reward (:data:`MODEL_REWARDS`) as a model name is
    (:func:`paretoalign.models.resolve_model`): resolved when it exists beside the file, else kept (a Hub id); so is
    the ``dataset`` of a labels oracle.
    Module references, absolute paths and specs written as text are returned as they are; the input is not
    modified.
    """
    if isinstance(value, list):
        return [resolve_spec_paths(item, base) for item in value]
    if not isinstance(value, Mapping):
        return value
    resolved = {}
    for key, item in value.items():
        if key == "path" and value.get("name") in MODEL_REWARDS and isinstance(item, str):
            local = _absolute(item, base)
            item = local if os.path.exists(local) or resolve_model(item).hub_id is None else item
        elif key == "dataset" and value.get("type") == "labels" and isinstance(item, str):
            local = _absolute(item, base)
            item = local if os.path.exists(local) else item
        elif key in PATH_KEYS and isinstance(item, str):
            item = _absolute(item, base)
        elif key == "function" and isinstance(item, str):
            location, separator, attribute = item.rpartition(":")
            if separator and location.strip().endswith(".py"):
                item = f"{_absolute(location.strip(), base)}:{attribute}"
        else:
            item = resolve_spec_paths(item, base)
        resolved[key] = item
    return resolved
