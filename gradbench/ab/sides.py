"""The two sides of an A/B: each a git revision of the repository that holds the model, checked out into a
worktree of its own, and a Python interpreter. What a side's worker imports follows from where it runs:
its working directory is the worktree (where the user stood, inside the repository), a user model's file is
the worktree's copy, and gradbench is the worktree's own when the repository is gradbench's (built-in
models), else the gradbench running this command."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace

from ..errors import BadInput
from ..models import _split_spec, is_user_model

SIDES = ("base", "candidate")
GRADBENCH_SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds gradbench/
# glibc's malloc moves its mmap and trim thresholds with what a process has allocated and freed so far, so two
# processes running the same code may differ for their whole life: one serves a step's activations from its
# heap, the other maps and faults them in afresh each step (measured on the 2-core VM: one side 27% slower for
# a whole round, with identical code). Pinned on both sides, the rounds' ratios varied 2-5x less
# (docs/studies/ab-cpu.md). Tensors over 32 MiB are still mapped each time, on both sides alike.
PINNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


@dataclass(frozen=True)
class Side:
    name: str  # base or candidate
    python: str  # the interpreter its workers run under
    revision: str | None = None  # as given; None: the working tree as it is
    commit: str | None = None  # the revision's commit
    repository: str | None = None  # the repository's top folder
    checkout: str | None = None  # the worktree; None: the working tree itself
    own_gradbench: bool = False  # the repository is gradbench's: the worker imports the checkout's gradbench

    @property
    def cwd(self) -> str:
        """Where the worker runs: where the user stands, in this side's checkout."""
        here = os.getcwd()
        if self.checkout and self.repository and inside(here, self.repository):
            return os.path.join(self.checkout, os.path.relpath(here, self.repository))
        return self.checkout or here

    def environment(self) -> dict:
        """The worker's environment: gradbench first on the path, the checkout's or this one's (through a
        folder that holds gradbench alone: where gradbench is pip-installed, its parent is site-packages, and
        another interpreter would import this one's torch from it)."""
        env = dict(os.environ)
        first = self.checkout if self.own_gradbench else gradbench_only()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (first, env.get("PYTHONPATH")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        for name, value in PINNED_MALLOC.items():  # the user's own setting wins
            env.setdefault(name, value)
        return env

    def model(self, model: str) -> str:
        """The model as this side's worker names it: a user model's file in this side's checkout."""
        if not is_user_model(model) or not self.checkout:
            return model
        target, function, is_file = _split_spec(model)
        if not is_file:
            return model  # a module: imported from the worker's working directory, the checkout
        path = os.path.realpath(target)
        if not inside(path, self.repository):
            return f"{path}:{function}"  # outside the repository: the same file on both sides
        return f"{os.path.join(self.checkout, os.path.relpath(path, os.path.realpath(self.repository)))}:{function}"

    def expected_source(self) -> str | None:
        """The folder whose code this side must run (a revision's checkout), None when not a revision."""
        return self.checkout

    def describe(self) -> str:
        where = f"{self.revision} ({self.commit[:12]})" if self.revision else "the working tree"
        python = "" if self.python == sys.executable else f", python {self.python}"
        return f"{where}{python}"


_GRADBENCH_ONLY: list[str] = []


def gradbench_only() -> str:
    """A temporary folder holding only a link to this gradbench package (made once, removed at exit)."""
    if not _GRADBENCH_ONLY:
        import atexit

        folder = tempfile.mkdtemp(prefix="gradbench-path-")
        os.symlink(os.path.join(GRADBENCH_SOURCE, "gradbench"), os.path.join(folder, "gradbench"))
        atexit.register(shutil.rmtree, folder, True)
        _GRADBENCH_ONLY.append(folder)
    return _GRADBENCH_ONLY[0]


def inside(path: str, folder: str | None) -> bool:
    """``path`` is ``folder`` or under it, links resolved."""
    if not folder:
        return False
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _git(repository: str, *args: str) -> str:
    """git in its own process group, all of which is killed if this one is interrupted: `git worktree add` starts
    a `git reset --hard` that outlived a killed parent and filled the checkout after it had been removed."""
    import signal

    process = subprocess.Popen(["git", "-C", repository, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate()
    except BaseException:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass
        process.wait()
        raise
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, args, out, err)
    return out.strip()


def toplevel(folder: str) -> str | None:
    """The git repository's top folder that holds ``folder``; None when it is in none."""
    try:
        return _git(folder, "rev-parse", "--show-toplevel")
    except (subprocess.CalledProcessError, FileNotFoundError, NotADirectoryError):
        return None


def repository_for(models, given: str | None) -> tuple[str, bool]:
    """(the repository the revisions are of, whether it is gradbench's own). ``given``: --repo. Otherwise
    the one repository that holds the user models' files (or, for modules, the current folder); with only
    built-in models, gradbench's own checkout."""
    if given is not None:
        top = toplevel(given) if os.path.isdir(given) else None
        if top is None:
            raise BadInput(f"--repo {given!r} is no folder in a git repository; name the repository that holds "
                           "the model")
        return top, os.path.realpath(top) == os.path.realpath(toplevel(GRADBENCH_SOURCE) or "")
    users = [m for m in models if is_user_model(m)]
    if not users:
        top = toplevel(GRADBENCH_SOURCE)
        if top is None or not os.path.isfile(os.path.join(top, "gradbench", "__init__.py")):
            raise BadInput(f"built-in models' revisions are gradbench's, and gradbench here ({GRADBENCH_SOURCE}) is "
                           "no git checkout; install it from a clone (pip install -e), or compare two interpreters "
                           "with --base-python/--candidate-python")
        return top, True
    found = {}
    for model in users:
        target, _, is_file = _split_spec(model)
        folder = os.path.dirname(os.path.abspath(target)) if is_file else os.getcwd()
        top = toplevel(folder)
        if top is None:
            where = f"model file {target!r}" if is_file else f"the current folder (where module {target!r} is imported from)"
            raise BadInput(f"{where} is in no git repository; revisions need one (or compare two interpreters "
                           "with --base-python/--candidate-python and no revisions)")
        found.setdefault(os.path.realpath(top), model)
    if len(found) > 1:
        raise BadInput("the user models are in different repositories (" + ", ".join(sorted(found)) +
                       "); an A/B compares revisions of one: give --repo, or compare them one repository at a time")
    top = next(iter(found))
    return top, top == os.path.realpath(toplevel(GRADBENCH_SOURCE) or "")


def resolve(repository: str, revision: str) -> str:
    """The commit a revision names in ``repository``; BadInput naming it otherwise."""
    if not revision or revision.startswith("-"):
        raise BadInput(f"bad revision {revision!r}; name a commit, branch or tag (HEAD, main, v0.4, HEAD~1)")
    try:
        return _git(repository, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    except subprocess.CalledProcessError:
        raise BadInput(f"unknown revision {revision!r} in {repository}; name a commit, branch or tag there "
                       "(git log --oneline shows them)") from None


def check_python(python: str | None, option: str) -> str:
    """The interpreter a side runs under: --base-python / --candidate-python, or this one."""
    if python is None:
        return sys.executable
    found = shutil.which(python) if os.sep not in python else python
    if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
        raise BadInput(f"{option} {python!r} is no executable Python interpreter; give the path of one "
                       "(e.g. /path/to/venv/bin/python) that has torch installed")
    return os.path.abspath(found)


def prepare(base: str | None, candidate: str | None, base_python: str | None, candidate_python: str | None,
            models, repo: str | None) -> tuple[Side, Side]:
    """Both sides, checked (no checkout made yet: ``checked_out`` does that)."""
    pythons = (check_python(base_python, "--base-python"), check_python(candidate_python, "--candidate-python"))
    revisions = (base, candidate)
    if (base is None) != (candidate is None):
        raise BadInput("name both revisions (BASE CANDIDATE), or neither to compare two interpreters")
    if base is None:
        if base_python is None and candidate_python is None:
            raise BadInput("nothing differs between the sides: name two revisions (gradbench ab HEAD~1 HEAD), or "
                           "two interpreters (--base-python, --candidate-python); ab HEAD HEAD is an A/A check")
        return tuple(Side(name, python) for name, python in zip(SIDES, pythons))  # type: ignore[return-value]
    repository, own = repository_for(models, repo)
    if not own:
        builtin = [m for m in models if not is_user_model(m)]
        if builtin:
            raise BadInput(f"built-in model {builtin[0]!r} is gradbench's code, the same in every revision of "
                           f"{repository}; compare it apart (with no user model, the revisions are gradbench's)")
    sides = tuple(Side(name, python, revision, resolve(repository, revision), repository, None, own)
                  for name, python, revision in zip(SIDES, pythons, revisions))
    _check_files(sides, models)
    return sides  # type: ignore[return-value]


def _check_files(sides, models) -> None:
    """A user model's file must be in the repository, and in at least one revision (an uncommitted file is in
    none); in one only, the other side's trials fail and say so. BadInput otherwise."""
    top = os.path.realpath(sides[0].repository)
    for model in models:
        target, _, is_file = _split_spec(model) if is_user_model(model) else ("", "", False)
        if not is_file:
            continue
        path = os.path.realpath(target)
        if not inside(path, top):
            raise BadInput(f"model file {target!r} is not in repository {sides[0].repository}, whose revisions are "
                           "compared; give a model file of that repository (or --repo naming the one that holds it)")
        relative = os.path.relpath(path, top)
        found = []
        for side in sides:
            try:
                _git(side.repository, "cat-file", "-e", f"{side.commit}:{relative}")
                found.append(side)
            except subprocess.CalledProcessError:
                pass
        if not found:
            raise BadInput(f"model file {relative!r} is in neither revision ({', '.join(s.revision for s in sides)}) "
                           f"of {sides[0].repository}; commit it (git add, git commit)")


def uncommitted(sides, models) -> list[str]:
    """The user model files with changes in the working tree that no revision holds (said, not refused)."""
    if sides[0].revision is None:
        return []
    found = []
    for model in models:
        target, _, is_file = _split_spec(model) if is_user_model(model) else ("", "", False)
        if is_file and os.path.exists(target):
            try:
                if _git(sides[0].repository, "status", "--porcelain", "--", os.path.realpath(target)):
                    found.append(target)
            except subprocess.CalledProcessError:
                pass
    return found


class Checkouts:
    """The sides' worktrees, one per distinct commit, made on entry and removed on exit."""

    def __init__(self, sides: tuple[Side, Side]):
        self.sides = sides
        self.folder: str | None = None

    def __enter__(self) -> tuple[Side, Side]:
        if self.sides[0].revision is None:
            return self.sides
        self.folder = tempfile.mkdtemp(prefix="gradbench-ab-")
        made: dict[str, str] = {}
        out = []
        try:
            for side in self.sides:
                if side.commit not in made:
                    path = os.path.join(self.folder, side.commit[:12])
                    try:
                        _git(side.repository, "worktree", "add", "--detach", "--quiet", path, side.commit)
                    except subprocess.CalledProcessError as exc:
                        why = ((exc.stderr or "").strip().splitlines() or ["git failed"])[-1]
                        raise BadInput(f"cannot check out {side.revision!r} of {side.repository}: {why}") from None
                    made[side.commit] = path
                out.append(replace(side, checkout=made[side.commit]))
        except BaseException:  # a Ctrl-C between two checkouts too: none is left behind
            self.__exit__()
            raise
        return tuple(out)  # type: ignore[return-value]

    def __exit__(self, *exc) -> None:
        if self.folder is None:
            return
        repository = self.sides[0].repository
        for name in os.listdir(self.folder):
            try:
                _git(repository, "worktree", "remove", "--force", os.path.join(self.folder, name))
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            _git(repository, "worktree", "prune")
        except subprocess.CalledProcessError:
            pass
        self.folder = None
