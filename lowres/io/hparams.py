"""Loading the recipe hparams files: shared parts once, each model x subset file a diff.

A model x subset file (``hparams/ecapa_tiny_few.yaml``) names the shared files it builds
on and lists only the values that differ, like the study's Hydra experiment files::

    extends: [shared/base.yaml, shared/ecapa.yaml]
    subset: tiny_few
    lr: 1.78e-2

The shared files are joined into one HyperPyYAML document (so every key, the grid keys
included, is a plain top-level key and ``!ref`` works across them); the file's own
values, then the command-line overrides, are applied as HyperPyYAML overrides, which
must name existing keys (a typo is an error, not a silently ignored value, and the error
suggests the closest keys: :func:`check_keys`, which lowres.grid applies too).
A file without ``extends`` (e.g. a run folder's resolved ``hyperparams.yaml``) is loaded
as plain HyperPyYAML.

HyperPyYAML's ``!include:`` is not used for this because it nests the included file
under a key, and the grids need ``--lr``, ``--max_steps`` ... at the top level.

A recipe resolves its chain once (:func:`resolve_hparams`) and checks, builds and records
that one document; every check refuses a value with :func:`invalid_hparam`'s wording.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import io
import os
from collections.abc import Collection, Iterable
from pathlib import Path

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

EXTENDS_KEY = "extends"


class HparamsError(ValueError):
    """A hyperparameter value is invalid; the message names the key and the value."""


def invalid_hparam(key: str, value: object, why: str) -> HparamsError:
    """The error every check raises for a refused value: one wording, which names the key
    and the value the user gave, so the message says what to change (tests match it)."""
    return HparamsError(f"invalid hparam {key}={value!r}: {why}")


def check_keys(keys: Iterable[str], known: Collection[str], source) -> None:
    """Raise :class:`HparamsError` for the first of ``keys`` that ``known`` (the keys of the
    hparams file ``source``) lacks, suggesting the closest known keys: a list of every key
    would bury the one the user meant."""
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=3)
            hint = (f"did you mean {' or '.join(map(repr, close))}?" if close
                    else "no key has a similar name")
            raise HparamsError(f"unknown hparam {key!r} (not in {source}): {hint}")


def hparams_keys(path) -> set[str]:
    """The top-level keys of ``path``'s document (its shared parts included): the keys an
    override may name."""
    text, merged = compose(path)
    return set(_top_level_keys(text)) | set(merged)


def _top_level_keys(text: str) -> list[str]:
    return [str(k) for k in (ruamel.yaml.YAML().load(text) or {})]


def name_list(value, key: str, choices: tuple[str, ...]) -> list[str]:
    """A list-valued key in every form a user types it, as a list of known names.

    ``original``, ``original,hard``, ``[original, hard]`` (a string, e.g. from argparse)
    and ``["original", "hard"]`` (a yaml list) all work; a plain string is one name or a
    comma/space-separated list, never a sequence of letters.  Duplicates are dropped
    (order kept).  Raises :class:`HparamsError` naming ``key`` and the value.
    """
    items = value
    if isinstance(value, str):
        items = value.strip().removeprefix("[").removesuffix("]").replace(",", " ").split()
    elif not isinstance(value, (list, tuple)):
        items = None
    names = None if items is None else [str(v).strip() for v in items]
    if not names or any(n not in choices for n in names):
        raise invalid_hparam(key, value, f"must be a non-empty list of {', '.join(choices)} "
                             f"(e.g. {choices[0]} or [{', '.join(choices)}])")
    return list(dict.fromkeys(names))


def overrides_dict(overrides) -> dict:
    """Overrides as a dict, from a dict or SpeechBrain's yaml string (``key: value`` lines)."""
    if overrides is None or overrides == "":
        return {}
    if isinstance(overrides, str):  # one top-level `key: value` per option; the last one wins
        chunks: list[str] = []
        for line in overrides.splitlines():
            if chunks and line[:1].isspace():
                chunks[-1] += "\n" + line
            elif line.strip():
                chunks.append(line)
        merged: dict = {}
        for chunk in chunks:
            merged.update(ruamel.yaml.YAML(typ="safe", pure=True).load(chunk) or {})
        return merged
    return dict(overrides)


def compose(path, overrides=None) -> tuple[str, dict]:
    """The joined HyperPyYAML text of ``path`` and the overrides to apply to it."""
    path = Path(path)
    if not path.is_file():
        raise HparamsError(f"hparams file not found: {path}")
    cell = ruamel.yaml.YAML().load(path.read_text(encoding="utf-8"))
    if not isinstance(cell, dict) or EXTENDS_KEY not in cell:
        return path.read_text(encoding="utf-8"), overrides_dict(overrides)
    parents = cell.pop(EXTENDS_KEY)
    if isinstance(parents, str):
        parents = [parents]
    texts = []
    for parent in parents:
        parent_path = path.parent / parent
        if not parent_path.is_file():
            raise HparamsError(f"{path}: {EXTENDS_KEY} names a missing file {parent_path}")
        texts.append(parent_path.read_text(encoding="utf-8"))
    merged = {**dict(cell), **overrides_dict(overrides)}
    return "\n".join(texts), merged


@dataclasses.dataclass(frozen=True)
class ResolvedHparams:
    """An hparams file with its overrides, composed and resolved once, so the checks, the
    built objects and the run's record all come from the same document:

    - :attr:`yaml`: the resolved text (every ``!ref`` and override applied), a run's
      ``hyperparams.yaml``;
    - :attr:`values`: its plain top-level values, for checks before anything is built;
    - :meth:`build`: its objects.

    :meth:`with_overrides` adds the values a recipe learns only after checking (e.g. the
    number of speakers in the manifests): it resolves again only if one of them differs,
    as the document's ``!ref`` s must then follow it.
    """

    path: Path
    overrides: dict  # the overrides applied on top of the file's own values, as given
    yaml: str
    text: str  # the joined, unresolved document (compose)
    merged: dict  # the file's own values and the overrides, applied to ``text``

    @functools.cached_property
    def values(self) -> dict:
        """The resolved top-level scalar values, without building any object."""
        return _plain(ruamel.yaml.YAML().load(self.yaml))  # tags kept, not built

    def build(self) -> dict:
        """The objects of the resolved document. HyperPyYAML's load resolves before it
        builds: on this text a pass that changes nothing, which hyperpyyaml cannot skip."""
        return load_hyperpyyaml(io.StringIO(self.yaml))

    def with_overrides(self, changes: dict) -> ResolvedHparams:
        """These hparams with ``changes`` added to the overrides; resolved again only when a
        change differs from the resolved value (or its type does)."""
        overrides = {**self.overrides, **changes}
        if all(k in self.values and type(self.values[k]) is type(v) and self.values[k] == v
               for k, v in changes.items()):
            return dataclasses.replace(self, overrides=overrides)
        merged = {**self.merged, **changes}
        return ResolvedHparams(self.path, overrides, _resolve(self.path, self.text, merged),
                               self.text, merged)


def resolve_hparams(path, overrides=None) -> ResolvedHparams:
    """``path`` with ``overrides`` (dict or SpeechBrain's yaml string), composed and resolved
    once; see :class:`ResolvedHparams`."""
    text, merged = compose(path, overrides)
    return ResolvedHparams(Path(path), overrides_dict(overrides), _resolve(path, text, merged),
                           text, merged)


def _resolve(path, text: str, merged: dict) -> str:
    try:
        return resolve_references(io.StringIO(text), merged, overrides_must_match=True).getvalue()
    except KeyError as err:  # an override names no key of the document
        check_keys(merged, _top_level_keys(text), path)
        raise HparamsError(f"{path}: {err.args[0] if err.args else err}") from err  # nested
    except ValueError as err:  # unset !PLACEHOLDER
        raise HparamsError(f"{path}: {err.args[0] if err.args else err}") from err


def resolved_yaml(path, overrides=None) -> str:
    """The fully resolved document (every ``!ref`` and override applied), as saved in a run."""
    return resolve_hparams(path, overrides).yaml


def plain_values(path, overrides=None) -> dict:
    """The resolved top-level scalar values, without building any object (for validation)."""
    return resolve_hparams(path, overrides).values


def _plain(values) -> dict:
    """The plain python top-level values of a resolved document loaded by ruamel."""
    plain = {}
    for key, v in values.items():
        for kind in (bool, int, float, str):  # ruamel's scalar subclasses -> plain python
            if isinstance(v, kind):
                plain[key] = kind(v)
                break
        else:
            if v is None:
                plain[key] = None
            elif isinstance(v, (dict, list)):  # plain containers only (no objects inside)
                try:
                    plain[key] = ruamel.yaml.YAML(typ="safe", pure=True).load(_dump(v))
                except ruamel.yaml.constructor.ConstructorError:
                    pass
    return plain


def _dump(node) -> str:
    stream = io.StringIO()
    ruamel.yaml.YAML().dump(node, stream)
    return stream.getvalue()


def load_hparams(path, overrides=None) -> dict:
    """Build the hparams of ``path`` with ``overrides`` (dict or SpeechBrain's yaml string)."""
    text, merged = compose(path, overrides)
    return _build(path, text, merged)


def load_moved_hparams(path, key: str, folder: str | os.PathLike, overrides=None) -> dict:
    """Build a resolved document (a run's ``hyperparams.yaml``) for the folder it is in now.

    In a resolved document every path below the folder ``key`` named (``output_folder``:
    ``save_folder``, the checkpointer's ``checkpoints_dir``, the train log) is a literal
    string, which an override of ``key`` alone no longer changes; built as stored, a relative
    one would make its folders under the current directory (SpeechBrain's Checkpointer
    creates its folder when built).  Here ``key`` and every string that is its stored value
    or a path below it start with ``folder`` instead; then ``overrides`` apply.
    """
    text = Path(path).read_text(encoding="utf-8")
    doc = ruamel.yaml.YAML().load(text)
    stored = doc.get(key) if isinstance(doc, dict) else None
    if isinstance(stored, str) and stored.rstrip("/"):
        _move_paths(doc, stored.rstrip("/"), os.fspath(folder))
        text = _dump(doc)
    return _build(path, text, overrides_dict(overrides))


def _move_paths(node, old: str, new: str, seen: set[int] | None = None):
    """``node`` with every string that is ``old`` or a path below it moved under ``new``
    (containers changed in place, once each, so every alias of a node sees one change)."""
    seen = set() if seen is None else seen
    if isinstance(node, (dict, list)):
        if id(node) in seen:
            return node
        seen.add(id(node))
        for k, v in (node.items() if isinstance(node, dict) else enumerate(node)):
            node[k] = _move_paths(v, old, new, seen)
    elif isinstance(node, str) and (node == old or node.startswith(old + "/")):
        return new + node[len(old):]
    return node


def _build(path, text: str, merged: dict) -> dict:
    try:
        return load_hyperpyyaml(io.StringIO(text), merged, overrides_must_match=True)
    except KeyError as err:  # an override names no key of the document
        check_keys(merged, _top_level_keys(text), path)
        raise HparamsError(f"{path}: {err.args[0] if err.args else err}") from err  # nested
    except ValueError as err:
        if "PLACEHOLDER" in str(err):
            raise HparamsError(f"{path}: {err}") from err
        raise
