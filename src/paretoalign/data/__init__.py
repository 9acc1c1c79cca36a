"""Data for alignment: preference pairs and prompts, read from files with errors that name file, line and field.

- :mod:`~paretoalign.data.files`: reading rows of JSON Lines / JSON / Parquet files and saved datasets, the
  :class:`PreferenceDataError` they raise, and the data shipped with paretoalign (``builtin:NAME``);
- :mod:`~paretoalign.data.preferences`: preference pairs -> the label matrix of K objectives;
- :mod:`~paretoalign.data.tokenize`: preference pairs -> token ids -> padded batches;
- :mod:`~paretoalign.data.sampler`: batches with a fixed number of pairs per objective;
- :mod:`~paretoalign.data.prompts`: the one prompt loader and the generated prompt sets.
"""

from paretoalign.data.files import (
    BUILTIN_PREFIX,
    DATA_FILE_SUFFIXES,
    PreferenceDataError,
    RowLocation,
    builtin_data_path,
    iter_source_rows,
    read_messages,
    resolve_data_source,
)
from paretoalign.data.preferences import (
    PREFERENCE_FEATURES,
    LoadReport,
    load_preferences,
    load_preferences_with_report,
)
from paretoalign.data.prompts import (
    ARITHMETIC_SYSTEM_PROMPT,
    BUILTIN_PROMPT_SETS,
    PROMPT_FEATURES,
    arithmetic_word_problems,
    load_prompts,
    transcript_messages,
)
from paretoalign.data.sampler import ObjectiveBalancedSampler
from paretoalign.data.tokenize import PreferenceCollator, TokenizeReport, prompt_token_ids, tokenize_preferences

__all__ = [
    "ARITHMETIC_SYSTEM_PROMPT",
    "BUILTIN_PREFIX",
    "BUILTIN_PROMPT_SETS",
    "DATA_FILE_SUFFIXES",
    "PREFERENCE_FEATURES",
    "PROMPT_FEATURES",
    "LoadReport",
    "ObjectiveBalancedSampler",
    "PreferenceCollator",
    "PreferenceDataError",
    "RowLocation",
    "TokenizeReport",
    "arithmetic_word_problems",
    "builtin_data_path",
    "iter_source_rows",
    "load_preferences",
    "load_preferences_with_report",
    "load_prompts",
    "prompt_token_ids",
    "read_messages",
    "resolve_data_source",
    "tokenize_preferences",
    "transcript_messages",
]
