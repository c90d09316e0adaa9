"""What a run prints for people while it runs: progress as cases finish. The summary at the end is
report/summary.py's. Nothing here measures or writes results."""
from __future__ import annotations

import sys
import time

from .record import case_label


class ProgressPrinter:
    """A bar with ETA on a terminal; one line per case otherwise (CI logs)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr  # looked up now: tests and wrappers replace sys.stderr
        self.tty = self.stream.isatty()

    def __call__(self, record: dict, progress) -> None:
        eta = progress.eta_s()
        eta_text = "--:--" if eta is None else time.strftime("%M:%S", time.gmtime(eta)) if eta < 3600 else \
            f"{eta / 3600:.1f} h"
        what = case_label(record)
        result = record["status"]
        if record["status"] == "ok":
            result = f"{record['time_median_s'] * 1e3:.3f} ms"
            if record.get("time_trusted") is False:
                result += " (untrusted)"
        if (record.get("repeat") or 1) > 1 or (record.get("attempt") or 1) > 1:
            what += f" [process {record['repeat']}, attempt {record['attempt']}]"
        if self.tty:
            width = 24
            filled = int(width * progress.done / max(progress.total, 1))
            line = f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.done}/{progress.total} ETA {eta_text}  " \
                   f"{what}: {result}"
            self.stream.write(line[:160].ljust(160))
            if progress.done == progress.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"[{progress.done}/{progress.total}] ETA {eta_text} {what}: {result}\n")
        self.stream.flush()
