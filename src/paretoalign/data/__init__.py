"""Data for alignment: preference pairs and prompts, read from files with errors that name file, line and field.

- :mod:`~paretoalign.data.files`: reading rows of JSON Lines / JSON / Parquet files and saved datasets, the
  :class:`PreferenceDataError` they raise, and the data shipped with paretoalign (``builtin:NAME``);
- :mod:`~paretoalign.data.transcripts`: HH-RLHF ``Human: ... Assistant:`` transcripts as messages, cut into prompt
  and response;
- :mod:`~paretoalign.data.columns`: column mappings and dataset presets (any layout -> multi-labelled pairs), and
  the resolution of every form of data source;
- :mod:`~paretoalign.data.preferences`: preference pairs -> the label matrix of K objectives;
- :mod:`~paretoalign.data.tokenize`: preference pairs -> token ids -> padded batches;
- :mod:`~paretoalign.data.sampler`: batches with a fixed number of pairs per objective;
- :mod:`~paretoalign.data.prompts`: the one prompt loader and the generated prompt sets.
"""
