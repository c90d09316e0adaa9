"""Records -> the pandas DataFrame that `gradbench.load`, the report and notebooks read: every schema
column present, and a null compile or autocast read as what files from before them meant. Neither
storage's job (it writes lines) nor the report's: gradbench.load (results.py) returns this frame, and
nothing outside report/ imports the report."""
from __future__ import annotations

from .record import Record
from .schema import IDENTITY_DEFAULTS, RECORD_FIELDS


def to_frame(records: list):
    """Records (or drafts) -> a pandas DataFrame with every schema column (unknown fields kept), a row per
    record as its JSON line holds it (lists as lists)."""
    import pandas as pd

    df = pd.DataFrame.from_records([r.to_json() if isinstance(r, Record) else r for r in records])
    for column in RECORD_FIELDS:
        if column not in df.columns:
            df[column] = None
    return with_identity_defaults(df)


def with_identity_defaults(df):
    """compile and autocast with a null (or no column) read as files from before them meant: eager."""
    return df.assign(**{k: df[k].astype(object).where(df[k].notna(), v) if k in df else v
                        for k, v in IDENTITY_DEFAULTS.items()})
