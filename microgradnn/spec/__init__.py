"""The training spec: one YAML file that says what to train, on what, and how.

A spec is *data*, never code: it is read with a safe YAML loader (no ``!!python`` tags,
no eval, a limit against alias bombs), and validated in full before any work starts.
Every problem is collected into one :class:`SpecError` rather than stopping at the
first, and each says

* where: the key path (``optimizer.lr``, ``train.metrics[1]``) and the file line,
* what was given (``-1 (int)``),
* what is allowed (``a float > 0``), and
* a did-you-mean for a misspelt key or component name.

The result is a :class:`ResolvedSpec`: frozen, typed, every default filled in from the
schema (its one home). The sections (every key has a default except ``data``)::

    model:     embedding_dim, cell, hidden_size, num_layers, dropout, bidirectional, init_state
    data:      {name: <dataset>, <dataset options>}
    loss:      null (chosen from the data's task) | {name: <loss>, <options>}
    optimizer: {name: adam, lr: 0.001, <options>}
    scheduler: null | {name: <scheduler>, <options>}
    train:     epochs | steps, batch_size, clipping, early_stopping, cadences, seed, device, ...
    finetune:  null | {from: <run or checkpoint>, strategy: {name: <strategy>, <options>}, head}
    output:    {dir: runs, name: <spec file's stem>}

A *component* (the cell, dataset, loss, optimizer, scheduler, fine-tuning strategy) is
written as its registry name, ``cell: gru``, or as a mapping with a ``name`` and its
options, ``cell: {name: rnn, nonlinearity: relu}``. Its options are bound
(``inspect.signature(...).bind``) to the very callable that build will call
(:meth:`microgradnn.contracts.Contract.target`: for ``rnn`` that is the fused
:class:`~microgradnn.nn.RNN` layer), so what ``mgnn check`` accepts builds, and a
plugin's options are validated exactly like a built-in's, with no schema to write.

Command-line overrides use the same key paths: ``optimizer.lr=3e-3``,
``train.metrics=[accuracy,f1]``, ``model.cell={name: gru}``, and ``~train.seed`` to delete
a key (back to its default). The value is read as YAML and then typed and validated
exactly like the file.

The package: :mod:`.errors` (Problem, SpecError), :mod:`.schema` (the keys and their
defaults), :mod:`.loading` (safe YAML in and out), :mod:`.options` (a component's options
from its signature), :mod:`.overrides`, :mod:`.validate` and :mod:`.resolved`.
"""

from .errors import UNSET, Problem, SpecError
from .loading import dump_spec, read_yaml
from .options import OptionInfo, component_options
from .overrides import apply_overrides, parse_override
from .resolved import (Component, EarlyStoppingSpec, FinetuneSpec, ModelSpec, OutputSpec, ResolvedSpec,
                       TrainSpec)
from .schema import DERIVED_OPTIONS, SCHEMA, SECTIONS, Field, format_schema, schema_rows
from .validate import default_loss, fill_task_defaults, load_spec, resolve_spec

__all__ = [
    "SpecError", "Problem", "Field", "OptionInfo", "SCHEMA", "SECTIONS", "DERIVED_OPTIONS", "UNSET",
    "load_spec", "resolve_spec", "apply_overrides", "parse_override", "dump_spec", "read_yaml",
    "component_options", "schema_rows", "format_schema", "default_loss", "fill_task_defaults",
    "ResolvedSpec", "Component", "ModelSpec", "TrainSpec", "EarlyStoppingSpec", "FinetuneSpec", "OutputSpec",
]
