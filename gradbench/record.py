"""The record: what one case measured, one JSON object per line. ``Fields`` declares the schema; a
``Record`` is one record, frozen and checked.

Field names are a contract others depend on: add fields, never rename them. Every field has a
kind, a unit and a sentence; nothing may write a field that is not declared here, JSON never holds
NaN or infinity (null instead), and the docs' field table is generated from this list (a test
keeps the two equal).

A record is in three parts (PARTS): the case (what was run: its identity and the settings it was
measured under), what was measured, and the environment (where, with what, by which front end); and
every record carries its format_version and kind. Measuring code fills a draft (``new_record``, a
dict) while a case runs; the writer freezes it into a ``Record``, which refuses what the schema does
not declare. Readers get Records (results.py), and change one only by making another
(``Record.replace``), checked again.
"""
from __future__ import annotations

import datetime as _dt
import math
import uuid
from collections.abc import Mapping
from types import MappingProxyType

from .schema import (CASE_KEY_FIELDS, FORMAT_VERSION, IDENTITY_DEFAULTS, KINDS, LIST_FIELDS, PART_FIELDS, RECORD_FIELDS,
                     SCHEMA, STATUSES)

_KINDS = {"str": str, "int": int, "float": (float, int)}


def new_record(**values) -> dict:
    """A draft: the dict measuring code fills in while a case runs, every declared field present (null where
    not given), of the current format and, unless told otherwise, a case; an undeclared name raises
    InvalidRecord (a TypeError). The writer freezes it into a Record, checking every value."""
    undeclared = _undeclared(values)
    if undeclared:
        raise InvalidRecord(undeclared)
    record = {**_NULLS, "format_version": FORMAT_VERSION, "kind": "case", **values}
    if record["timestamp"] is None:
        record["timestamp"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return record


_NULLS = dict.fromkeys(RECORD_FIELDS)


class InvalidRecord(TypeError):
    """Values a Record refuses: undeclared names, values not of their field's kind or range."""

    def __init__(self, problems: list[str]):
        super().__init__(f"record breaks the schema (gradbench/schema.py): {'; '.join(problems)}")
        self.problems = problems


class Record(Mapping):
    """One record, frozen: its case, what was measured and its environment (``.case``, ``.measured``,
    ``.environment``: read-only mappings of PART_FIELDS), its ``format_version`` and ``kind``. Every value
    is checked when it is made (kind_errors), lists are held as tuples (and handed out as fresh lists, as a
    JSON line has them), and nothing changes it after:
    ``replace`` makes a changed copy, checked again. It reads as the flat mapping of field names that a
    JSON line is (``record["status"]``, ``record.get(...)``, ``dict(record)``); ``to_json`` gives that line's
    object.

    ``Record(draft)`` is a record gradbench writes: declared fields only, NaN and infinity as null.
    ``Record.read(values)`` is one read from a file, already in the current format (migrate.py): unknown
    fields of an old file are kept, read-only (``.unknown``), and refused if it is written again."""

    __slots__ = ("_values", "_unknown")

    def __init__(self, values: Mapping | None = None, /, **more):
        values = {"format_version": FORMAT_VERSION, "kind": "case", **(values or {}), **more}
        undeclared = _undeclared(values)
        values = finite_or_none(values)
        problems = undeclared + _errors(values)
        if problems:
            raise InvalidRecord(problems)
        self._fill(values)

    @classmethod
    def read(cls, values: Mapping) -> Record:
        """A record read from a file, migrated: fields it lacks are null, unknown ones kept; InvalidRecord
        (its ``problems``) if a declared field is not of its kind or range, or format_version or kind is
        not there."""
        problems = _errors(values)
        if problems:
            raise InvalidRecord(problems)
        record = cls.__new__(cls)
        record._fill(values)
        return record

    def _fill(self, values: Mapping) -> None:
        flat = {**_NULLS, **values}  # declared fields in schema order, then unknown ones
        for name in LIST_FIELDS:
            if flat[name] is not None:
                flat[name] = tuple(flat[name])
        unknown = tuple(name for name in flat if name not in SCHEMA)
        for name in unknown:
            flat[name] = _frozen(flat[name])
        object.__setattr__(self, "_values", flat)
        object.__setattr__(self, "_unknown", unknown)

    def replace(self, **changes) -> Record:
        """This record with ``changes`` to declared fields (NaN and infinity as null), checked again."""
        undeclared = _undeclared(changes)
        changes = finite_or_none(changes)
        header = {name: changes.get(name, self._values[name]) for name in ("format_version", "kind")}
        problems = undeclared + kind_errors(changes) + (_header_errors(header) if header.keys() & changes else [])
        if problems:
            raise InvalidRecord(problems)
        record = type(self).__new__(type(self))
        record._fill({**self._values, **changes})
        return record

    def to_json(self) -> dict:
        """The record as a JSON line holds it: flat, declared fields in schema order (then unknown ones kept
        from an old file), lists as lists; never NaN or infinity."""
        flat = dict(self._values)
        for name in (*LIST_FIELDS, *self._unknown):
            flat[name] = finite_or_none(flat[name])
        return flat

    @property
    def format_version(self) -> int:
        return self._values["format_version"]

    @property
    def kind(self) -> str:
        return self._values["kind"]

    @property
    def case(self) -> Mapping:
        """What was run: identity and measurement settings."""
        return self._part("case")

    @property
    def measured(self) -> Mapping:
        """What was measured: outcome, time, compile, trust, memory, behaviour, energy, work."""
        return self._part("measured")

    @property
    def environment(self) -> Mapping:
        """Where and with what it ran, and the front end that measured it (provenance)."""
        return self._part("environment")

    @property
    def unknown(self) -> Mapping:
        """Fields an old file held that this schema does not declare (empty for records gradbench makes)."""
        return MappingProxyType({name: self._values[name] for name in self._unknown})

    def _part(self, part: str) -> Mapping:
        return MappingProxyType({name: self[name] for name in PART_FIELDS[part]})

    # the flat mapping of field names, read-only; a list field is handed out as a fresh list (changing it
    # changes nothing here), so that a record compares with what its JSON line holds
    def __getitem__(self, name: str):
        value = self._values[name]
        return list(value) if name in _LIST_FIELDS and value is not None else value

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, name) -> bool:
        return name in self._values

    def get(self, name: str, default=None):
        return self[name] if name in self._values else default

    def keys(self):
        return self._values.keys()

    def items(self):
        return [(name, self[name]) for name in self._values]

    def values(self):
        return [self[name] for name in self._values]

    def __eq__(self, other) -> bool:
        if isinstance(other, Record):
            return self._values == other._values
        return self.to_json() == dict(other.items()) if isinstance(other, Mapping) else NotImplemented

    __hash__ = None  # equal to a dict of the same fields, which is not hashable either

    def __setattr__(self, name, value):
        raise AttributeError(_frozen_hint(name))

    def __delattr__(self, name):
        raise AttributeError("a Record is frozen")

    def __setitem__(self, name, value):
        raise TypeError(_frozen_hint(name))

    def __delitem__(self, name):
        raise TypeError("a Record is frozen")

    def __reduce__(self):  # pickle and copy: made again from its JSON, checked again
        return Record.read, (self.to_json(),)

    def __repr__(self) -> str:
        shown = ("kind", *CASE_KEY_FIELDS, "status")
        return f"Record({', '.join(f'{k}={self._values[k]!r}' for k in shown)}, ...)"


_LIST_FIELDS = frozenset(LIST_FIELDS)


def _frozen_hint(name: str) -> str:
    how = f"record.replace({name}=...) makes a changed, checked copy" if name in SCHEMA else \
        f"{name!r} is not a record field; dict(record) is a plain copy to change"
    return f"a Record is frozen: {how}"


def _frozen(value):
    """An unknown field's value, read-only: lists as tuples, objects as read-only mappings."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


def _header_errors(values: Mapping) -> list[str]:
    """Every record carries format_version and kind, and a record in memory is of the current format."""
    found = [f"{name} is null: every record carries one" for name in ("format_version", "kind")
             if values.get(name) is None]
    version = values.get("format_version")
    if _is_kind(version, "int") and version != FORMAT_VERSION:
        found.append(f"format_version={short_repr(version)} is not {FORMAT_VERSION}: a record is of the current "
                     "format (migrate.py brings older ones to it)")
    return found


def _errors(values: Mapping) -> list[str]:
    return kind_errors(values) + _header_errors(values)


def new_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def _is_kind(value, kind: str) -> bool:
    if kind.startswith("list["):  # null stands in for a non-finite number, in lists too (a Record's are tuples)
        return isinstance(value, (list, tuple)) and all(v is None or _is_kind(v, kind[5:-1]) for v in value)
    if kind == "bool":
        return isinstance(value, bool)
    if not isinstance(value, _KINDS[kind]) or isinstance(value, bool):
        return False
    if kind == "int":  # what a DataFrame column (int64) holds
        return -(2 ** 63) <= value < 2 ** 63
    if kind == "float":  # finite, and an integer that a float can hold
        return abs(value) < 2 ** 1023 if isinstance(value, int) else math.isfinite(value)
    return True


# Units of amounts that cannot be below zero: a negative peak_bytes is a crafted or broken file, never a measurement.
NON_NEGATIVE_UNITS = ("bytes", "count", "tokens", "pixels")


def kind_errors(record: Mapping) -> list[str]:
    """Declared fields whose values are not of their kind, or out of its range (a reader skips such a
    record): an int beyond int64, a float that is not finite, bytes or a count below 0, a status that is
    not one of STATUSES, a kind not one of KINDS. (One pass over the fields: every record read is checked.)"""
    mistyped, below = [], []
    for name, kind, non_negative in _CHECKS:
        value = record.get(name)
        if value is None:
            continue
        if not _is_kind(value, kind):
            mistyped.append(f"{name}={short_repr(value)} is not {kind}")
        elif non_negative and value < 0:
            below.append(f"{name}={short_repr(value)} is below 0")
    problems = mistyped + below
    if record.get("status") is not None and record["status"] not in STATUSES:
        problems.append(f"status={short_repr(record['status'])} is not one of {', '.join(STATUSES)}")
    if record.get("kind") is not None and record["kind"] not in KINDS:
        problems.append(f"kind={short_repr(record['kind'])} is not one of {', '.join(KINDS)}")
    return problems


_CHECKS = tuple((name, meta["kind"], meta["unit"] in NON_NEGATIVE_UNITS) for name, meta in SCHEMA.items())


def short_repr(value) -> str:
    """A value as an error message shows it: repr (control characters escaped), cut to 60 characters."""
    big = isinstance(value, int) and abs(value) >= 10 ** 30  # repr of a 5000-digit int raises
    text = f"an integer of {value.bit_length()} bits" if big else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _undeclared(names) -> list[str]:
    return [f"undeclared field {name!r}" for name in names if name not in SCHEMA]


def type_errors(record: Mapping) -> list[str]:
    """What in ``record`` breaks the schema: undeclared names, wrong kinds. Empty when it conforms."""
    return _undeclared(record) + kind_errors(record)


def finite_or_none(value):
    """NaN and infinity become None (JSON has neither), inside lists and dicts too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, Mapping):  # a dict, a Record, an unknown field's read-only object
        return {k: finite_or_none(v) for k, v in value.items()}
    return value


def identity_value(record, name: str):
    """An identity field's value, with a null read as what files from before the field meant. A DataFrame's
    null is NaN (a column of numbers and nulls), which equals nothing, itself included: read as null too, or
    two rows of one case would have different keys."""
    value = record.get(name)
    return IDENTITY_DEFAULTS.get(name) if value is None or value != value else value


def _whole(value):
    """An integer a DataFrame column with a null in it holds as a float, as the integer."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _given(value) -> bool:
    """An input axis's value is given: not null, not NaN (a frame's null), not 0 (the report's key for null)."""
    return value is not None and value == value and value != 0


def case_key(record: dict) -> tuple:
    return tuple(identity_value(record, k) for k in CASE_KEY_FIELDS)


def case_label(record, omit: tuple = ()) -> str:
    """A case (a record, a row, or a Case's identity) as people read it: 'mlp/tiny b8 cpu float32 eval
    forward', 'bert/base b8 s128 cpu ...' (sequence length 128), 'resnet/50 b8 224px ...' (image size 224);
    ``omit`` drops identity fields a table shows elsewhere (its columns, the compared side)."""
    parts = {"model": f"{record['model']}/{record['size']}", "batch_size": f"b{_whole(record['batch_size'])}",
             **{k: text.format(_whole(v)) for k, text in (("seq_len", "s{}"), ("image_size", "{}px"))
                for v in [record.get(k)] if _given(v)},
             **{k: str(record[k]) for k in ("device", "dtype") if k not in omit},
             **{k: f"{k}={v}" for k in IDENTITY_DEFAULTS if k not in omit
                for v in [identity_value(record, k)] if v != IDENTITY_DEFAULTS[k] and v == v},
             **{k: str(record[k]) for k in ("mode", "step") if k not in omit}}
    return " ".join(v for k, v in parts.items() if k not in omit)
