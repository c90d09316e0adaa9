"""Which record stands for a case, and which records are of which kind: the one place that decides both.

A results file holds every attempt: a resumed case's failure and its later result, --retry-untrusted's
attempts, the processes of a --repeat run, and a capacity search's probes beside the run's cases.
Every reader (the run summary, --resume, the report, compare) asks here which of them count.

Kinds. A record is a ``case`` (one measured case), a ``capacity_probe`` (one batch a `gradbench
capacity` search measured), an ``ab_trial`` or a ``prediction``: its ``kind`` field, which every Record
carries (migrate.py gives a record from before that field the kind its source says: capacity, or a case).
A draft or a DataFrame row without a kind is read by the same rule. Only a case stands for a case: no other
kind displaces one.

Rank. How well a record stands for its case, best first:
  TRUSTED   ok, with a timing not judged untrusted (time_trusted true, or null: not judged, e.g. asv)
  UNTRUSTED ok, with a timing judged untrusted (time_trusted false)
  UNTIMED   ok, without a timing (a capacity search's memory pass; an asv memory benchmark)
  FAILED    any other status (error, oom, timeout, crashed, not_applicable)
Within one group of records of the same case, the newest (last read: file order, files in the order
given) of the best rank present stands. So a trusted record beats a newer untrusted one, an ok record
beats a later failure (a failed retry never hides a measurement), a timing beats a memory pass, and
among failures the newest stands.

Groups: what is kept apart (each stands on its own) and what competes.
  Always apart: kind and harness (source), and a capacity probe's budget and search (run_id).
  standing (a file as read; the run summary; --resume): case, repeat (a --repeat run's processes each
    stand); attempts and resumed runs compete, whatever their commit or run_id.
  combined (the report): case, input file and git commit (asv holds many commits in one folder); a
    case's repeats are combined: the records of the best rank, time and memory the median over them.
  per_run (compare): case, input file, run_id and repeat (a run: one worker process; asv: one commit).
  one_source (the report's tables, findings and figures): per group (GROUP_FIELDS), the first harness of
    HARNESS_ORDER that measured it, and its newest commit (latest timestamp).
  baseline (the report's compiled vs eager): matched, not ranked: the same case's record from the same
    run, else the newest by timestamp; its trust is shown beside the ratio.
  capacity_searches: per case, mode and budget, the newest search (the run_id read last).
  predictions (report/predictions.py): per case the newest prediction, paired with the newest ok
    measurement of the case.
"""
from __future__ import annotations

from .measure.stats import iqr, median_ci
from .migrate import kind_from_source
from .record import case_key
from .schema import CASE_KEY_FIELDS, GROUP_FIELDS

KINDS = ("case", "capacity_probe")
TRUSTED, UNTRUSTED, UNTIMED, FAILED = 3, 2, 1, 0
HARNESS_ORDER = ("gradbench", "asv", "pytest-benchmark")  # whose timing stands first: gradbench's own
CAPACITY_CASE = ["model", "size", "seq_len", "image_size", "device", "dtype", "step"]  # a capacity answer's case


def kind_of(record) -> str:
    """A record's kind: its own field where it has one, else what files from before it meant. The one rule,
    for a DataFrame's rows too (_kinds)."""
    kind = record.get("kind")
    return kind if isinstance(kind, str) else kind_from_source(record)


def _kinds(df):
    """kind_of for every row of a DataFrame."""
    import pandas as pd

    rows = df[[c for c in ("kind", "source") if c in df]].to_dict("records")
    return pd.Series([kind_of(r) for r in rows], index=df.index, dtype=object)


def _of_kind(data, kind: str):
    if isinstance(data, list):
        return [r for r in data if kind_of(r) == kind]
    return data[_kinds(data) == kind]


def cases(data):
    """The records (a list, or a DataFrame's rows) that are measured cases."""
    return _of_kind(data, "case")


def capacity_probes(data):
    """The records (a list, or a DataFrame's rows) that a capacity search measured."""
    return _of_kind(data, "capacity_probe")


def ab_trials(data):
    """The records (a list, or a DataFrame's rows) that `gradbench ab` measured: one side, one case, one round."""
    return _of_kind(data, "ab_trial")


def predictions(data):
    """The records (a list, or a DataFrame's rows) that `gradbench predict` computed on fake tensors."""
    return _of_kind(data, "prediction")


def reported(data):
    """The records of the kinds this gradbench reports as cases (cases and capacity probes): A/B trials and
    predictions have sections of their own (report/ab.py, report/predictions.py); neither is ever counted or
    shown as a case."""
    if isinstance(data, list):
        return [r for r in data if kind_of(r) in KINDS]
    return data[_kinds(data).isin(KINDS)]


def _untrusted(value) -> bool:
    """time_trusted is false (null: not judged, e.g. asv or pytest-benchmark); numpy's bool too."""
    return value is False or (type(value).__name__ == "bool_" and not value)


def _missing(value) -> bool:
    return value is None or value != value  # null, or a DataFrame's NaN


def rank(record) -> int:
    """TRUSTED, UNTRUSTED, UNTIMED or FAILED: see the module's docstring."""
    if record.get("status") != "ok":
        return FAILED
    if _missing(record.get("time_median_s")):
        return UNTIMED
    return UNTRUSTED if _untrusted(record.get("time_trusted")) else TRUSTED


def standing_key(record) -> tuple:
    """The key under which records compete in `standing`: kind, case, repeat, harness (and a probe's search, an
    A/B trial's comparison, side and round: every trial stands)."""
    kind = kind_of(record)
    search = (record.get("memory_budget_bytes"), record.get("run_id")) if kind == "capacity_probe" else \
        (record.get("ab_id"), record.get("ab_round"), record.get("ab_position")) if kind == "ab_trial" else ()
    return (kind, case_key(record), record.get("repeat") or 1, record.get("source"), *search)


def standing(records: list) -> list:
    """The records that stand, one per case and repeat (harness and kind apart), in the file order of
    the records chosen: so a resumed case's result replaces its failure, and among --retry-untrusted
    attempts a trusted one stands, else an ok one."""
    chosen: dict[tuple, object] = {}
    for r in records:
        key = standing_key(r)
        old = chosen.get(key)
        if old is not None and rank(old) > rank(r):
            continue
        chosen.pop(key, None)  # re-insert at the end: file order of the newest records
        chosen[key] = r
    return list(chosen.values())


def _text(df, blank: str = "-"):
    """Columns as text, a null as ``blank``: keys that a NaN (never equal to itself) cannot split."""
    return df.astype(object).where(df.notna(), blank).astype(str)


def _ranks(df):
    import pandas as pd

    return pd.Series([rank(r) for r in df.to_dict("records")], index=df.index, dtype=int)


def best_ranked(df) -> tuple:
    """(the rows of the best rank present, that rank): the records of one case that count together."""
    ranks = _ranks(df)
    best = int(ranks.max()) if len(df) else FAILED
    return df[ranks == best], best


def per_run(df, keys: list[str]):
    """One row per group of ``keys`` (a case and a run, for compare): the newest of the best rank, rows
    in the order read."""
    if df.empty:
        return df
    groups = [_text(df[k]) for k in keys]
    ranks = _ranks(df)
    best = ranks == ranks.groupby(groups).transform("max")
    return df[best][~_text(df[best][keys]).duplicated(keep="last")]


def combined(df):
    """One row per case, input file and commit, capacity probes left out: the processes of a --repeat run
    combined. The records of the best rank count; time and memory are the median over them, raw samples
    pooled; a case with failures only is its newest failure."""
    import pandas as pd

    df = cases(df)
    keys = ["source_file", "source", "git_commit", *CASE_KEY_FIELDS]  # commits and harnesses are not repeats
    keyed = _text(df[keys])
    duplicated = keyed.duplicated(keep=False)
    if not duplicated.any():
        return df
    rows = [r for _, r in df[~duplicated].iterrows()]
    for _, part in df[duplicated].groupby([keyed[k][duplicated] for k in keys], sort=False):
        use, best = best_ranked(part)
        rows.append(use.iloc[-1] if best == FAILED else _combined(use, best == UNTRUSTED))
    return pd.DataFrame(rows).reset_index(drop=True)


def _combined(use, untrusted: bool):
    """Several processes' records of one case as one: medians over processes; the interval, IQR and
    count of the pooled samples; the worst contention any of them saw; no single run or repeat."""
    import pandas as pd

    row = use.iloc[-1].copy()
    for column in ("time_median_s", "peak_bytes", "saved_bytes", "held_bytes"):
        values = pd.to_numeric(use[column], errors="coerce").dropna()
        row[column] = float(values.median()) if not values.empty else row[column]
    pooled = [v for s in use["samples_s"] if isinstance(s, list) for v in s if v is not None]
    row["samples_s"] = pooled
    if len(pooled) >= 2:
        row["time_iqr_s"] = iqr(pooled)
        row["time_ci_low_s"], row["time_ci_high_s"] = median_ci(pooled)
    row["n_samples"] = len(pooled)
    row["time_converged"] = bool(use["time_converged"].eq(True).all())
    for column in ("cpu_other_share", "cpu_steal_share", "cpu_wait_share"):
        values = pd.to_numeric(use[column], errors="coerce").dropna()
        row[column] = float(values.max()) if not values.empty else None
    flops = pd.to_numeric(pd.Series([row["flops"]]), errors="coerce").iloc[0]
    row["flops_per_s"] = flops / row["time_median_s"] if pd.notna(flops) and row["time_median_s"] else None
    row["repeat"] = None
    row["run_id"] = "; ".join(dict.fromkeys(use["run_id"].dropna().astype(str)))
    row["time_trusted"] = False if untrusted else row["time_trusted"]
    row["time_distrust"] = "; ".join(dict.fromkeys(use["time_distrust"].dropna())) if untrusted else None
    return row


def one_source(df):
    """Each group's records (GROUP_FIELDS) from one harness and one commit: the first harness in HARNESS_ORDER that
    measured it, and that harness's newest commit (asv runs many). A ratio or a finding then never
    sets one timer's train against another's eval, nor one commit's against another's. (The report
    shows the harnesses side by side, and the asv history every commit.)"""
    if df.empty:
        return df
    keys = [_text(df[k]) for k in GROUP_FIELDS]
    if df["source"].nunique() > 1:
        order = df["source"].map(lambda v: HARNESS_ORDER.index(v) if v in HARNESS_ORDER else len(HARNESS_ORDER))
        df = df[order == order.groupby(keys).transform("min")]
        keys = [k.loc[df.index] for k in keys]
    commits = _text(df["git_commit"])
    if commits.nunique() > 1:
        stamp = _text(df["timestamp"], "")
        newest = stamp.groupby([*keys, commits]).transform("max")  # a commit's newest record
        df = df[newest.groupby(keys).transform("max") == newest]
    return df


def _run_ids(record) -> set:
    """A combined --repeat row joins its processes' run ids with '; '."""
    return set(str(record.get("run_id") or "").split("; ")) - {""}


def baseline(record, candidates: list):
    """The baseline of ``record`` among records of its case (eager for a compiled one): one from the same
    run if there is one, else the newest. None when there is none, so that no ratio is made up."""
    if not candidates:
        return None
    same_run = [c for c in candidates if _run_ids(c) & _run_ids(record)]
    return max(same_run or candidates, key=lambda c: str(c.get("timestamp") or ""))


def capacity_searches(df):
    """The capacity probes of the newest search (the run_id read last) of each case, mode and budget,
    in the order read."""
    probes = capacity_probes(df)
    if probes.empty:
        return probes
    groups = [_text(probes[k]) for k in (*CAPACITY_CASE, "mode", "memory_budget_bytes")]
    runs = _text(probes["run_id"])
    return probes[runs == runs.groupby(groups).transform("last")]


def capacity_curve(probes):
    """Probes of one case and mode as a curve: one per batch size (the newest of the best rank, whatever
    its budget: a batch needs what it needs), sorted by batch size."""
    return per_run(probes, ["batch_size"]).sort_values("batch_size", kind="stable")
