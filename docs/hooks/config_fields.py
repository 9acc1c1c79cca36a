"""MkDocs hook: the configuration reference, generated from the config dataclasses themselves.

A page line ``<!-- config-fields: paretoalign.trainers.grpo:MultiRewardGRPOConfig -->`` becomes a Markdown table of
that dataclass's own fields, one row each: name, type, default and the ``help`` text of the field's metadata (what
``paretoalign <command> --help`` prints), followed for a file field by what a relative path written in a YAML file
means (its ``path`` kind). Own fields are those declared in a class of the ``paretoalign`` package, including the
ones it declares again with its own default or help (``output_dir``, ``report_to``, ...). Fields that come unchanged
from a base class of another package (transformers' ``TrainingArguments``, TRL's ``GRPOConfig``) are left out; one
sentence below the table says they are accepted too and links to their documentation.

These stop the build with an error naming the page and the marker: a malformed marker; one that names a missing
module or class, or a class that is not a dataclass; a field without help text; a path kind this hook does not know.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from typing import Any

import yaml
from mkdocs.exceptions import PluginError

OWN_PACKAGE = "paretoalign"

MARKER = re.compile(r"<!--\s*config-fields:\s*(?P<target>\S+)\s*-->")
#: Any line that mentions a config-fields marker, well-formed or not (a malformed one is an error, never skipped).
MARKER_LINE = re.compile(r"^(?P<before>.*?)(?P<marker><!--\s*config-fields\b.*?)[ \t]*$", re.MULTILINE)

#: Documentation of the configuration classes of other packages that paretoalign's configs extend.
FOREIGN_CONFIG_DOCS = {
    "transformers.training_args.TrainingArguments": (
        "transformers.TrainingArguments",
        "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments",
    ),
    "trl.trainer.grpo_config.GRPOConfig": (
        "trl.GRPOConfig",
        "https://huggingface.co/docs/trl/grpo_trainer#trl.GRPOConfig",
    ),
}

#: What a relative path means in a field of each ``path`` kind of :func:`paretoalign.config.field_help`.
PATH_NOTES = {
    "path": "Written in a YAML file: relative to the file's folder.",
    "data": "Written in a YAML file: paths relative to the file's folder.",
    "model": "Written in a YAML file: a file or folder beside it is read relative to the file's folder.",
    "reward_spec": "Written in a YAML file: files named in the spec are relative to the file's folder.",
}

CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
MARKDOWN_SPECIAL = re.compile(r"([\\*_\[\]|])")


def load_target(target: str) -> type:
    """The class a marker names, written ``package.module:ClassName``."""
    module_name, separator, class_name = target.partition(":")
    if not separator or not module_name or not class_name:
        raise ValueError(f"{target!r} is not of the form package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"module {module_name!r} cannot be imported: {error}") from error
    config_class = getattr(module, class_name, None)
    if not isinstance(config_class, type) or not dataclasses.is_dataclass(config_class):
        raise ValueError(f"{module_name} has no dataclass named {class_name!r}")
    return config_class


def is_own(klass: type) -> bool:
    return klass.__module__ == OWN_PACKAGE or klass.__module__.startswith(OWN_PACKAGE + ".")


def own_field_names(config_class: type) -> list[str]:
    """Names of the fields that classes of the paretoalign package declare in their own class bodies: those of its
    paretoalign bases first, in the order the bases are listed (``ModelArguments``, ``LoraArguments``, ...), then the
    class's own, each in the order it is written; a field declared again keeps its first place."""
    own_classes = [klass for klass in config_class.__mro__ if is_own(klass)]
    names: dict[str, None] = {}
    for klass in own_classes[1:] + own_classes[:1]:
        names.update(dict.fromkeys(name for name in inspect.get_annotations(klass) if name not in names))
    return list(names)


def foreign_base(config_class: type) -> type | None:
    """The nearest dataclass base from another package, whose fields the config accepts too."""
    for klass in config_class.__mro__[1:]:
        if dataclasses.is_dataclass(klass) and not is_own(klass):
            return klass
    return None


def markdown_text(text: str) -> str:
    """Text for one table cell: code spans kept as they are, Markdown and HTML specials escaped elsewhere."""
    pieces, position = [], 0
    for span in CODE_SPAN.finditer(text):
        pieces.append(_escaped(text[position : span.start()]))
        pieces.append(span.group(0))
        position = span.end()
    pieces.append(_escaped(text[position:]))
    return " ".join("".join(pieces).split())


def _escaped(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def code_span(text: str) -> str:
    """``text`` as one inline code span (longer backtick fences when the text holds backticks)."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def type_text(config_class: type, config_field: dataclasses.Field) -> str:
    """The field's annotation as written in the class that declares it (transformers' argument parser replaces
    ``Field.type`` by a resolved type, so the annotations of the class are read instead)."""
    for klass in config_class.__mro__:
        annotation = vars(klass).get("__annotations__", {}).get(config_field.name)
        if annotation is not None:
            return annotation if isinstance(annotation, str) else repr(annotation).replace("typing.", "")
    return repr(config_field.type)


def yaml_value(value: Any) -> str:
    """A default as it is written in a YAML config file (``null``, ``true``, ``[q_proj, k_proj]``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def default_text(config_field: dataclasses.Field) -> str:
    if config_field.default is not dataclasses.MISSING:
        return code_span(yaml_value(config_field.default))
    if config_field.default_factory is not dataclasses.MISSING:
        return code_span(yaml_value(config_field.default_factory()))
    return "required"


def fields_table(config_class: type) -> str:
    """The Markdown table of a config dataclass's own fields, and the sentence about the fields it inherits."""
    fields_by_name = {config_field.name: config_field for config_field in dataclasses.fields(config_class)}
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name in own_field_names(config_class):
        config_field = fields_by_name.get(name)
        if config_field is None or not config_field.init:
            continue
        help_text = config_field.metadata.get("help")
        if not help_text:
            raise ValueError(f"{config_class.__name__}.{name} has no help text in its field metadata")
        path_kind = config_field.metadata.get("path")
        if path_kind is not None:
            if path_kind not in PATH_NOTES:
                raise ValueError(f"{config_class.__name__}.{name}: path kind {path_kind!r} is not in PATH_NOTES")
            help_text = f"{help_text.rstrip().removesuffix('.')}. {PATH_NOTES[path_kind]}"
        lines.append(
            f"| `{config_field.name}` | {code_span(type_text(config_class, config_field))} | {default_text(config_field)} "
            f"| {markdown_text(help_text)} |"
        )
    base = foreign_base(config_class)
    if base is not None:
        qualified = f"{base.__module__}.{base.__qualname__}"
        if qualified not in FOREIGN_CONFIG_DOCS:
            raise ValueError(
                f"{config_class.__name__} extends {qualified}, whose documentation link is not in FOREIGN_CONFIG_DOCS"
            )
        name, url = FOREIGN_CONFIG_DOCS[qualified]
        lines += ["", f"Every field of [`{name}`]({url}) is accepted too, in the YAML file and on the command line."]
    return "\n".join(lines)


def replace_markers(markdown: str, where: str) -> str:
    """``markdown`` with every config-fields marker replaced by its table; errors name ``where`` and the marker."""

    def table(line: re.Match) -> str:
        marker = MARKER.fullmatch(line.group("marker"))
        try:
            if marker is None or line.group("before").strip():
                raise ValueError("write it as <!-- config-fields: package.module:ClassName --> on a line of its own")
            return fields_table(load_target(marker.group("target")))
        except ValueError as error:
            raise PluginError(f"{where}: {line.group('marker')}: {error}") from error

    return MARKER_LINE.sub(table, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return replace_markers(markdown, page.file.src_uri)
