"""What a run prints at its end: the ratio tables over the whole results file, then this run's failures,
untrusted timings and harness overhead, counted over the records that stand (dataset.py)."""
from __future__ import annotations

from ..dataset import standing as records_that_stand
from ..record import case_label
from .tables import render, summary_tables


def print_summary(out: str, everything, records: list[dict], progress, wall: float, retries: int = 0,
                  concurrent: bool = False) -> None:
    """Ratio tables over the whole file; failures, untrusted timings and overhead of this run's records.
    Failures and counts are of the records that stand: a case that failed and then completed (a resumed
    Slurm task, a retry) is counted once, as what it became. ``concurrent``: several workers measured at
    once (--gpus, Slurm), so the harness overhead is not wall time minus measurement time."""
    for title, table in (summary_tables(everything) if everything is not None else {}).items():
        print(f"\nforward: {title}")
        print(render(table))
    standing = records_that_stand(records)
    failed = [r for r in standing if r["status"] not in ("ok", "not_applicable")]
    if failed:
        print(f"\n{len(failed)} cases did not complete (they are results too):")
        for r in failed[:10]:
            print(f"  {case_label(r)}: {r['status']}: {(r['error'] or '').splitlines()[0][:120]}")
        if len(failed) > 10:
            print(f"  ... and {len(failed) - 10} more in {out}")
    print_untrusted(records, retries)
    measured = sum(r.get("measure_wall_s") or 0 for r in records)
    counts: dict[str, int] = {}
    for r in standing:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    superseded = f"; {len(records) - len(standing)} earlier attempts superseded" if len(records) > len(standing) else ""
    overhead = ""
    if records and concurrent:
        overhead = f"; {measured:.1f} s inside measurement, summed over workers that ran at once"
    elif records and wall:
        overhead = f"; {measured:.1f} s inside measurement ({(1 - measured / wall) * 100:.0f}% harness overhead)"
    print(f"\n{len(standing)} cases ({statuses or 'none'}{superseded}) in {wall:.1f} s{overhead}")
    print(f"results: {out}")


def print_untrusted(records: list[dict], retries: int) -> None:
    """The cases whose best attempt is still untrusted, with the reason; what retries recovered."""
    standing = [r for r in records_that_stand(records) if r["status"] == "ok"]
    recovered = sum(1 for r in standing if (r.get("attempt") or 1) > 1 and r.get("time_trusted"))
    bad = [r for r in standing if r.get("time_trusted") is False]
    if recovered:
        print(f"\n{recovered} untrusted timings were trusted when measured again (--retry-untrusted)")
    if not bad:
        return
    print(f"\n{len(bad)} of {len(standing)} ok timings are untrusted (kept, and marked in the report):")
    several = any((r.get("repeat") or 1) > 1 for r in standing)
    for r in bad[:10]:
        where = f" (process {r['repeat']})" if several else ""
        print(f"  {case_label(r)}{where}: {r['time_distrust']}")
    if len(bad) > 10:
        print(f"  ... and {len(bad) - 10} more")
    advice = "measure them again with --retry-untrusted N; " if not retries else \
        f"they stayed untrusted through {retries} retries; "
    print(f"  {advice}gradbench selfcheck says whether the machine is quiet")
