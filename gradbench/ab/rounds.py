"""Randomized interleaved rounds (Abedi & Brecht, ICPE 2017). In each round both sides measure every case in
fresh measuring processes, one per side, in an order drawn at random: the cases shuffled; per case, both sides
set the case up (in a random order), then time it in short blocks that alternate between the sides, which
goes first drawn for each pair of blocks, so that each pair is taken within a few tens of milliseconds. The
machine is watched over those blocks for other work (a manager's monitor: the two workers are not "other
work"). Rounds go on until every case's verdict is settled, or a limit is reached; from the sixth round
(the fewest with an interval at 95%), a case whose verdict is settled is retired, so that later rounds measure
only the cases still open (a sequential test per case: each stops at its own first settled look), and so is a
case one side failed in, at once. Every trial is written as it comes.

Each side has one interpreter for the whole comparison, which forks each round's measuring process (10 ms,
where a new interpreter costs 2 s of importing torch). A fork inherits its parent's memory layout; with
glibc malloc's thresholds left to move, that made identical code differ by up to 9% for a whole comparison,
and every round started new interpreters. With them pinned (sides.PINNED_MALLOC), forks of one parent showed
no such bias (3 A/A comparisons, 36 cases: every estimate within 3.3% of 1, 2 of 36 intervals without 1;
docs/studies/ab-cpu.md)."""
from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

from ..case import Case
from ..migrate import migrated
from ..record import InvalidRecord, Record
from ..measure.contention import monitor_of
from ..schema import SCHEMA
from ..text import counted
from . import verdict
from .sides import GRADBENCH_SOURCE, SIDES, Side, inside

HELLO_TIMEOUT_S = 120.0  # importing torch on a cold disk
# Rounds whose trials run every pass (behaviour, memory, counting): two, so that peak, held and saved bytes are
# seen to repeat; later trials only set the step up and time it (no memory pass), at a fraction of the cost.
FULL_ROUNDS = 2


class SideFailed(Exception):
    """A side's worker cannot start or speak the protocol: the comparison cannot go on (one line)."""


class TrialLost(Exception):
    """The worker died or overran during one trial: that trial is recorded as crashed or timeout."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class SideWorker:
    """One side's worker (executors/stdio_worker.py): an interpreter that has imported torch and gradbench,
    kept for the whole comparison, which forks a fresh measuring process for each round (``fork``, ``end``).
    Its stderr, and its measuring processes', go to ``log``."""

    def __init__(self, side: Side, threads: int | None, log_path: str):
        self.side = side
        self.log_path = log_path
        command = [side.python, "-m", "gradbench.executors.stdio_worker"]
        if threads:
            command += ["--threads", str(threads)]
        if not os.path.isdir(side.cwd):
            raise SideFailed(f"{side.name}: the folder you run ab from, {os.path.relpath(os.getcwd(), side.repository or '.')}"
                             f", does not exist in revision {side.revision!r}; run ab from the repository's top folder")
        self.log = open(log_path, "ab")
        try:
            self.process = subprocess.Popen(command, cwd=side.cwd, env=side.environment(), stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=self.log, start_new_session=True)
        except OSError as exc:
            self.log.close()
            raise SideFailed(f"{side.name}: cannot start {side.python}: {exc.strerror or exc}") from None
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.hello: dict | None = None
        self.measuring: int | None = None  # the pid of this round's measuring process

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _receive(self, timeout: float):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return "timeout"
        if line is None:
            return None
        try:
            return json.loads(line)
        except ValueError:
            return {"error": f"not a protocol line: {line[:200]!r}"}

    def last_error(self) -> str:
        """The last line written to stderr (why a process ended)."""
        try:
            with open(self.log_path, "rb") as f:
                lines = [l for l in f.read().decode(errors="replace").splitlines() if l.strip()]
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def greet(self) -> dict:
        """The worker's hello; SideFailed when it does not come (no torch in that Python, an old revision)."""
        from ..executors.stdio_worker import PROTOCOL

        hello = self._receive(HELLO_TIMEOUT_S)
        if not isinstance(hello, dict) or "protocol" not in hello:
            self.stop()
            why = self.last_error() or (f"no answer in {HELLO_TIMEOUT_S:.0f} s" if hello == "timeout" else "it ended")
            if "No module named" in why and "gradbench" in why:
                why += (" (a gradbench older than `gradbench ab` has no such worker: compare revisions that have it)"
                        if self.side.own_gradbench else f" (this gradbench, {GRADBENCH_SOURCE}, was put on its path)")
            raise SideFailed(f"{self.side.name} ({self.side.describe()}): its worker did not start: {why} "
                             f"(log: {self.log_path})")
        if hello["protocol"] != PROTOCOL:
            self.stop()
            raise SideFailed(f"{self.side.name}: its gradbench speaks worker protocol {hello['protocol']}, this one "
                             f"{PROTOCOL}; compare revisions of one protocol")
        source = self.side.checkout if self.side.own_gradbench else None
        if source and not inside(hello.get("gradbench_path", ""), source):
            self.stop()
            raise SideFailed(f"{self.side.name}: its worker imported gradbench from {hello.get('gradbench_path')}, "
                             f"not from revision {self.side.revision!r}'s checkout ({source}): an installed "
                             "gradbench shadows it; run ab from a clone installed with pip install -e")
        self.hello = hello
        return hello

    def _send(self, message: dict) -> None:
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise TrialLost("crashed", f"the {self.side.name} worker had ended: {self.last_error()}") from None

    def fork(self) -> int:
        """A fresh measuring process for this round; its pid."""
        self._send({"fork": True})
        reply = self._receive(HELLO_TIMEOUT_S)
        if not isinstance(reply, dict) or "forked" not in reply:
            raise SideFailed(f"{self.side.name}: its worker could not start a measuring process: "
                             f"{self.last_error() or reply!r} (log: {self.log_path})")
        self.measuring = reply["forked"]
        return self.measuring

    def end(self) -> None:
        """The round's measuring process ended (told to, or killed when it does not)."""
        if self.measuring is None:
            return
        try:
            self._send({"end": True})
            reply = self._receive(30)
            if reply == "timeout":
                self._kill_measuring()
                self._until_ended()
        except TrialLost:
            pass
        self.measuring = None

    def _until_ended(self, timeout_s: float = 30) -> None:
        """Read past whatever the killed measuring process still said, to the worker's "ended"."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            reply = self._receive(max(0.01, deadline - time.perf_counter()))
            if reply is None or reply == "timeout" or (isinstance(reply, dict) and "ended" in reply):
                return

    def _kill_measuring(self) -> None:
        import signal

        if self.measuring is not None:
            try:
                os.kill(self.measuring, signal.SIGKILL)
            except OSError:
                pass

    def _ask(self, message: dict, timeout_s: float) -> dict:
        """One request to the measuring process. Its death (the worker says ``ended``) or silence past
        ``timeout_s`` (it is killed) is TrialLost; a fresh process is forked for the rest of the round."""
        if self.measuring is None:
            self.fork()
        self._send(message)
        reply = self._receive(timeout_s)
        if reply == "timeout":
            self._kill_measuring()
            self._until_ended()  # a reply that came just too late, then the worker's "ended"
            self.measuring = None
            raise TrialLost("timeout", f"no answer in {timeout_s:g} s (--timeout); its process was killed")
        if reply is None:
            raise SideFailed(f"{self.side.name}: its worker ended: {self.last_error()} (log: {self.log_path})")
        if "ended" in reply:
            self.measuring = None
            raise TrialLost("crashed", f"the {self.side.name} measuring process died (exit status "
                                       f"{reply['ended']}): {self.last_error()}")
        if "error" in reply:
            raise TrialLost("error", reply["error"])
        return reply

    def open(self, case: Case, run_id: str, timeout_s: float, passes: str) -> dict:
        """The case set up and kept ready: {"record", "opened", "model_file"}. ``passes``: "all" measures it
        through every pass first (a whole record); "timing" only sets it up."""
        payload = asdict(case)
        payload["model"] = self.side.model(case.model)
        return self._ask({"open": payload, "run_id": run_id, "passes": passes}, timeout_s)

    def block(self, seconds: float, timeout_s: float) -> dict:
        """The ready step timed for at most ``seconds``: {"median", "samples", "measured_s"}."""
        return self._ask({"block": seconds}, timeout_s)

    def close(self, timeout_s: float) -> None:
        self._ask({"close": True}, timeout_s)

    def stop(self, wait: bool = True) -> None:
        """The worker and any measuring process gone (``wait`` False: told to end, not waited for)."""
        self._kill_measuring()
        if not wait:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            return
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self.log.close()


@dataclass(frozen=True)
class Limits:
    threshold: float  # fraction: --fail-above / 100
    memory_threshold: float  # fraction: --fail-memory-above / 100
    max_rounds: int
    max_time_s: float | None
    timeout_s: float
    threads: int | None
    alternations: int  # timed blocks per side per case in a round, alternating (--alternations)
    block_s: float  # timing cap of one block (--block-time)


def draw_order(cases: list[int], rng: random.Random, alternations: int) -> list[tuple[int, tuple, list[tuple]]]:
    """One round's plan: the cases shuffled; per case the order the sides set it up in, and per alternation
    which side's block goes first."""
    order = list(cases)
    rng.shuffle(order)
    plan = []
    for i in order:
        opening = tuple(rng.sample(SIDES, 2))
        blocks = [tuple(rng.sample(SIDES, 2)) for _ in range(alternations)]
        plan.append((i, opening, blocks))
    return plan


def comparable(trials: list[Record], cases: list[Case]) -> list[int]:
    """The cases worth another round: each side measured them ok in the first (a case not applicable on
    both sides, or failing on one, has its verdict already)."""
    from ..record import case_key as record_key

    ok: dict[tuple, set] = {}
    for t in trials:
        if t["status"] == "ok":
            ok.setdefault(record_key(t), set()).add(t["ab_side"])
    return [i for i, case in enumerate(cases) if ok.get(record_key(case.identity())) == set(SIDES)]


TIME_FIELDS = ("time_median_s", "time_iqr_s", "time_ci_low_s", "time_ci_high_s", "n_samples", "samples_s",
               "steps_per_sample", "time_converged", "time_measured_s", "flops_per_s", "time_trusted", "time_distrust")


def _ab_fields(side: Side, fields: dict) -> dict:
    return dict(kind="ab_trial", ab_side=side.name, ab_revision=side.revision, ab_commit=side.commit,
                ab_repository=side.repository, ab_python=side.python, **fields)


def trial_record(raw: dict, case: Case, side: Side, fields: dict, blocks: list[dict] | None,
                 contention=None) -> Record:
    """A side's trial as an ab_trial of this gradbench's format: the worker's record (migrated from its format,
    fields this schema does not declare dropped, the case named as the user named it) with its time from the
    alternated blocks (``samples_s``: one median per block, in the round's order) and the window's contention."""
    from ..measure.stats import iqr

    try:
        values = {k: v for k, v in migrated(raw).items() if k in SCHEMA}
    except ValueError as exc:  # TooNew: a revision that writes a newer record format than this gradbench reads
        raise SideFailed(f"{side.name}: its worker writes records this gradbench cannot read ({exc}); run ab "
                         "from the newer revision's gradbench") from None
    values.update(model=case.model, **_ab_fields(side, fields))
    if blocks:
        medians = [b["median"] for b in blocks]
        values.update(time_median_s=verdict.median(medians), time_iqr_s=iqr(medians), time_ci_low_s=None,
                      time_ci_high_s=None, n_samples=len(medians), samples_s=medians, steps_per_sample=None,
                      time_converged=None, time_measured_s=sum(b["measured_s"] for b in blocks),
                      flops_per_s=None, **(contention.fields() if contention else {}),
                      time_trusted=not verdict.disturbance(contention.fields()) if contention else None,
                      time_distrust="; ".join(verdict.disturbance(contention.fields())) or None if contention else None)
    else:  # its pair never timed (a side failed): no time at all, not the full round's own
        values.update({name: None for name in TIME_FIELDS})
    try:
        return Record(values)
    except InvalidRecord as exc:  # a revision whose records differ from this gradbench's schema
        raise SideFailed(f"{side.name}: its worker's record does not fit this gradbench's schema "
                         f"({'; '.join(exc.problems)[:300]}); compare revisions of one record format") from None


def lost_record(case: Case, side: Side, run_id: str, lost: TrialLost, fields: dict) -> Record:
    from ..session import failure_record

    return failure_record(case, run_id, lost.status, str(lost)).replace(**_ab_fields(side, fields))


def run_rounds(cases: list[Case], sides: tuple[Side, Side], limits: Limits, ab_id: str, write: Callable[[Record], None],
               log_folder: str, say: Callable[[str], None], rng: random.Random | None = None,
               settings_fields: dict | None = None) -> dict:
    """Measure rounds until settled or a limit; returns {"rounds", "trials" (this ab's records), "hellos",
    "stopped" (why the rounds ended)}."""
    rng = rng or random.Random()
    trials: list[Record] = []
    started = time.perf_counter()
    rnd = 0
    active = list(range(len(cases)))
    workers: dict[str, SideWorker] = {}
    try:
        for side in sides:  # both interpreters start at once
            workers[side.name] = SideWorker(side, limits.threads, os.path.join(log_folder, f"{side.name}.log"))
        hellos = {name: worker.greet() for name, worker in workers.items()}
        for rnd in range(1, limits.max_rounds + 1):
            round_began = time.perf_counter()
            try:
                for worker in workers.values():
                    worker.fork()
                _one_round(rnd, cases, active, sides, workers, limits, ab_id, rng, settings_fields or {},
                           lambda record: (write(record), trials.append(record)))
            except BaseException:  # Ctrl-C, SIGTERM, a side that failed: no waiting on a case in flight
                for worker in workers.values():
                    worker._kill_measuring()
                raise
            finally:
                for worker in workers.values():
                    worker.end()
            active, stopped = _after_round(rnd, round_began, started, trials, cases, active, limits, say)
            if stopped:
                break
        else:
            stopped = f"--max-rounds {limits.max_rounds} reached"
    finally:
        for worker in workers.values():  # both told first, then waited for: they end at once
            worker.stop(wait=False)
        for worker in workers.values():
            worker.stop()
    return {"rounds": rnd, "trials": trials, "hellos": hellos, "stopped": stopped}


def _after_round(rnd: int, round_began: float, started: float, trials: list[Record], cases: list[Case],
                 active: list[int], limits: Limits, say: Callable[[str], None]) -> tuple[list[int], str | None]:
    """After a round: the cases still compared, and why the rounds stop (None: they go on)."""
    if rnd == 1:
        measured = 2 * len(active)
        active = comparable(trials, cases)
        if not active:
            say(f"round 1: {measured} trials; no case ran ok on both sides, so there is nothing to compare")
            return active, "no case ran ok on both sides"
    measured = len(active) if rnd > 1 else len(cases)
    verdicts = case_verdicts(trials, [cases[i] for i in active], limits)
    # a case with its verdict is retired, later rounds skip it: one settled (from the sixth round, the fewest with
    # an interval), or one a side failed in (at once)
    still = [i for i, v in zip(active, verdicts.values()) if verdict.open_to_more_rounds(v)]
    retired = len(active) - len(still)
    compared = len(comparable(trials, cases))
    elapsed = time.perf_counter() - started
    say(f"round {rnd}: {counted(measured, 'case')} on both sides in {time.perf_counter() - round_began:.1f} s; "
        + (f"{retired} retired with a verdict; " if retired and rnd > 1 else "")
        + (f"{len(still)} of {counted(compared, 'case')} still open" if still else f"every case of {compared} has its verdict")
        + f" ({elapsed:.0f} s so far)")
    active = still
    if not active:
        return active, "every case has its verdict"
    if limits.max_time_s is not None and elapsed >= limits.max_time_s:
        return active, f"--max-time {limits.max_time_s:g} s reached"
    return active, None


def _one_round(rnd: int, cases: list[Case], active: list[int], sides: tuple[Side, Side], workers: dict, limits: Limits,
               ab_id: str, rng: random.Random, settings_fields: dict, keep: Callable[[Record], None]) -> None:
    """Every active case once on both sides: set up (which side first drawn), timed in alternating blocks,
    closed; each side's trial written."""
    run_id = f"{ab_id}-r{rnd}"
    by_name = {side.name: side for side in sides}
    passes = "all" if rnd <= FULL_ROUNDS else "timing"
    position = 0
    for index, opening, block_order in draw_order(active, rng, limits.alternations):
        case = cases[index]
        opened: dict[str, dict] = {}
        for name in opening:
            fields = dict(ab_id=ab_id, ab_round=rnd, ab_position=position, **settings_fields)
            position += 1
            try:
                reply = workers[name].open(case, run_id, limits.timeout_s, passes)
            except TrialLost as lost:
                keep(lost_record(case, by_name[name], run_id, lost, fields))
                continue
            _check_source(by_name[name], case, reply.get("model_file"))
            opened[name] = dict(reply, fields=fields)
        blocks: dict[str, list] = {name: [] for name in SIDES}
        contention = None
        ready = [name for name in SIDES if opened.get(name, {}).get("opened")]
        if len(ready) == 2:
            monitor = monitor_of([workers[name].measuring for name in SIDES]).start()
            timing = None
            try:
                for pair in block_order:
                    for timing in pair:
                        blocks[timing].append(workers[timing].block(limits.block_s, limits.timeout_s))
            except TrialLost as lost:  # that side's trial failed; the other's has no pair, so no time
                blocks = {name: [] for name in SIDES}
                opened[timing]["record"] = dict(opened[timing]["record"], status=lost.status,
                                                error=f"while timed: {lost}")
            contention = monitor.stop()
        for name in ready:
            try:
                if workers[name].measuring is not None:
                    workers[name].close(limits.timeout_s)
            except TrialLost:
                pass
        for name in opening:
            if name in opened:
                keep(trial_record(opened[name]["record"], case, by_name[name], opened[name]["fields"], blocks[name],
                                  contention))


def _check_source(side: Side, case: Case, model_file: str | None) -> None:
    """A revision's side must run the revision's model code, not an installed copy that shadows it."""
    if side.checkout and model_file and not inside(model_file, side.checkout) and side.repository \
            and inside(model_file, side.repository):
        raise SideFailed(f"{side.name}: model {case.model!r} was imported from {model_file}, the working tree, not "
                         f"from revision {side.revision!r}'s checkout; run ab from inside the repository "
                         "(or give the model as a file path)")


def case_verdicts(trials, cases: list[Case], limits: Limits) -> dict:
    """Case -> CaseVerdict, in the cases' order."""
    from ..record import case_key as record_key

    by_case: dict[tuple, list] = {}
    for t in trials:
        by_case.setdefault(record_key(t), []).append(t)
    out = {}
    for case in cases:
        out[case] = verdict.case_verdict(by_case.get(record_key(case.identity()), []), limits.threshold,
                                         limits.memory_threshold)
    return out
