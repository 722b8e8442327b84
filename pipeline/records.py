"""Stage records in ``<work_dir>/stages/<stage>.json``: fingerprints, up-to-date checks, resume.

A record holds the stage's parameters, a fingerprint of every input (size, mtime and SHA-256 of
each file), its outputs with their fingerprints, its results, its warnings and its timing. A stage
is *up to date* when its record is complete, its parameters are equal, its inputs have the same
content (a touched but unchanged file still matches: the hash decides) and its outputs are intact.
A record left ``running`` by an interrupted run, or one whose parameters differ only in the
stage's ``resume_ignores`` keys (e.g. a larger ``kimg``), lets the stage resume.

Every file the pipeline writes goes through an :class:`OutputDir`, which records it in the folder's
hidden marker; only recorded files are ever replaced or removed, so a file someone else put in a
work-dir folder is never lost.
"""

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Callable, Dict, Optional, Tuple

from pipeline import PipelineError
from superres_tf import files


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` with :func:`superres_tf.files.write_bytes` (hidden temp file,
    fsync, rename; nothing left behind on failure), creating the folder first.

    A folder that cannot be created or written (or a full disk) raises PipelineError naming ``path``.
    """
    files.write_bytes(path, data, PipelineError)


def json_bytes(obj) -> bytes:
    """``obj`` as indented, key-sorted JSON text."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


OWNED_MARKER = ".made_by_run_pipeline"  # JSON: the files run_pipeline.py wrote in the folder


class OutputDir:
    """A folder the pipeline writes into, and the record of the files it wrote there.

    The hidden marker file lists (relative paths) every file written through :meth:`write` or
    :meth:`move_in`, or adopted after a trainer ran (:meth:`adopt_new`). Only listed files are ever
    replaced or removed: writing over a file that is not listed is a PipelineError, and
    :meth:`clear` leaves such files where they are. A symbolic link as the folder, or as a folder
    between the work dir and it, is a PipelineError.
    """

    def __init__(self, path: str, root: str):
        self.path = os.path.abspath(path)
        root = os.path.abspath(root)
        inside = os.path.relpath(self.path, root)
        parts = [] if inside == "." else inside.split(os.sep)
        for i in range(len(parts)):
            if os.path.islink(os.path.join(root, *parts[:i + 1])):
                raise PipelineError(f"{os.path.join(root, *parts[:i + 1])}: is a symbolic link; run_pipeline.py "
                                    "writes only into real folders of its --work_dir")
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as error:
            raise PipelineError(f"{self.path}: cannot write ({error.strerror}: {error.filename})") from None
        self.marker = os.path.join(self.path, OWNED_MARKER)
        try:
            with open(self.marker, encoding="utf-8") as f:
                self.owned = set(json.load(f)["files"])
        except (OSError, ValueError, KeyError, TypeError):  # none yet, or an older empty marker
            self.owned = set()

    def _save(self):
        atomic_write_bytes(self.marker, json_bytes({"files": sorted(self.owned)}))

    def files(self) -> set:
        """Relative paths of the files in the folder (hidden ones excepted)."""
        return set(fingerprint_names(self.path))

    def claim(self, rel: str) -> str:
        """The absolute path for writing ``rel``, recorded first; PipelineError if a file that the
        pipeline did not write is there."""
        path = os.path.join(self.path, rel)
        if rel not in self.owned and os.path.lexists(path):
            raise PipelineError(f"{path}: was not written by run_pipeline.py (or by an older version); refusing "
                                "to overwrite it: move it away or choose another --work_dir")
        if rel not in self.owned:
            self.owned.add(rel)
            self._save()
        return path

    def write(self, rel: str, data: bytes) -> str:
        """Write ``data`` to ``rel`` atomically (see :meth:`claim`); returns the path."""
        path = self.claim(rel)
        atomic_write_bytes(path, data)
        return path

    def move_in(self, paths) -> list:
        """Move files (e.g. from a staging folder) into this folder under their base names; every
        name is claimed before anything moves. Returns the new paths."""
        targets = [self.claim(os.path.basename(p)) for p in paths]
        for source, target in zip(paths, targets):
            os.replace(source, target)
        return targets

    def clear(self, keep=()):
        """Remove the recorded files (except ``keep``) and the folders they leave empty; others stay."""
        for rel in sorted(self.owned - set(keep)):
            path = os.path.join(self.path, rel)
            if os.path.lexists(path) and not os.path.isdir(path):
                os.remove(path)
            parent = os.path.dirname(path)
            while parent != self.path and os.path.isdir(parent) and not os.listdir(parent):
                os.rmdir(parent)
                parent = os.path.dirname(parent)
        self.owned &= set(keep)
        self._save()

    def adopt_new(self, before: set):
        """Record the files that appeared since ``before`` (a :meth:`files` listing): what a trainer wrote."""
        self.owned |= self.files() - before
        self._save()

    def require_only_owned(self):
        """PipelineError when the folder holds files the pipeline did not write (after :meth:`clear`,
        before a trainer starts from scratch in it)."""
        foreign = sorted(self.files() - self.owned)
        if foreign:
            raise PipelineError(f"{self.path}: holds files run_pipeline.py did not write ({', '.join(foreign[:3])}"
                                f"{' ...' if len(foreign) > 3 else ''}); move them away or choose another --work_dir")

    @contextlib.contextmanager
    def staging(self):
        """A hidden temporary folder beside this one (same file system) for writers that choose their
        own file names; removed afterwards. Move its files in with :meth:`move_in`."""
        folder = tempfile.mkdtemp(prefix=".staging-", dir=os.path.dirname(self.path))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def trainer_dir(ws, path: str, resume: bool) -> OutputDir:
    """A trainer's outdir inside the work dir ``ws``: when not resuming, the files an earlier attempt
    recorded are removed, and files the pipeline did not write are an error (the trainer would
    continue from them). Record what the trainer writes with :meth:`OutputDir.adopt_new`."""
    out = OutputDir(path, ws.root)
    if not resume:
        out.clear()
        out.require_only_owned()
    return out


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_temp(name: str) -> bool:
    return name.startswith(".") or ".tmp" in name


def fingerprint_names(folder: str) -> list:
    """Relative paths of the files below ``folder``, sorted; hidden and temp files are left out."""
    names = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _is_temp(d))
        names += [os.path.relpath(os.path.join(dirpath, n), folder) for n in sorted(filenames) if not _is_temp(n)]
    return names


def fingerprint(path: str, previous: Optional[dict] = None) -> dict:
    """Fingerprint a file or a directory tree: ``{relpath: [size, mtime_ns, sha256]}``.

    A file is keyed ``'.'``. Hashes of files whose size and mtime equal those in ``previous`` are
    reused instead of re-read. A missing path gives ``{}``; hidden and temp files are ignored.
    """
    previous = previous or {}
    if os.path.isfile(path):
        entries = [(".", path)]
    elif os.path.isdir(path):
        entries = [(rel, os.path.join(path, rel)) for rel in fingerprint_names(path)]
    else:
        return {}
    result = {}
    for rel, full in entries:
        st = os.stat(full)
        old = previous.get(rel)
        if old and old[0] == st.st_size and old[1] == st.st_mtime_ns:
            digest = old[2]
        else:
            digest = _sha256(full)
        result[rel] = [st.st_size, st.st_mtime_ns, digest]
    return result


def same_content(a: dict, b: dict) -> bool:
    """True when two fingerprints list the same files with the same sizes and hashes."""
    return {k: (v[0], v[2]) for k, v in a.items()} == {k: (v[0], v[2]) for k, v in b.items()}


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True))


@dataclasses.dataclass
class Stage:
    """One pipeline stage.

    Attributes:
      name: record name, e.g. ``'finetune'``.
      params: ``cfg -> dict`` of the settings the stage depends on (JSON-able).
      inputs: ``(cfg, ws) -> {name: path or None}`` of files/folders whose content it depends on
        (``None`` entries are recorded as absent).
      run: ``(cfg, ws, resume: bool) -> StageResult``.
      resume_ignores: parameter keys that may change without losing the right to resume.
    """

    name: str
    params: Callable
    inputs: Callable
    run: Callable
    resume_ignores: Tuple[str, ...] = ()


@dataclasses.dataclass
class StageResult:
    """What a stage body returns: output paths, numbers for the report, and warnings."""

    outputs: Dict[str, str]
    result: dict = dataclasses.field(default_factory=dict)
    warnings: list = dataclasses.field(default_factory=list)


class Workspace:
    """Paths inside ``work_dir`` and the stage records stored there."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def path(self, *parts: str) -> str:
        """Absolute path of ``parts`` inside the work dir."""
        return os.path.join(self.root, *parts)

    def rel(self, path: str) -> str:
        """``path`` relative to the work dir when inside it, else absolute (as stored in records)."""
        path = os.path.abspath(path)
        inside = os.path.commonpath([path, self.root]) == self.root
        return os.path.relpath(path, self.root) if inside else path

    def record_path(self, stage: str) -> str:
        return self.path("stages", f"{stage}.json")

    def load_record(self, stage: str) -> Optional[dict]:
        """The stage's record, or None if it has none (or an unreadable one)."""
        try:
            with open(self.record_path(stage), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def save_record(self, stage: str, record: dict) -> None:
        OutputDir(self.path("stages"), self.root).write(f"{stage}.json", json_bytes(record))

    def output(self, stage: str, name: str) -> Optional[str]:
        """Absolute path of output ``name`` of a completed ``stage``, or None."""
        record = self.load_record(stage)
        if not record or record.get("status") != "complete" or name not in record["outputs"]:
            return None
        return self.path(record["outputs"][name])

    def require(self, stage: str, name: str) -> str:
        """Like :meth:`output`, but a PipelineError when ``stage`` has not completed."""
        path = self.output(stage, name)
        if not path:
            raise PipelineError(f"{self.record_path(stage)}: stage {stage} has not completed "
                                f"(run --stage={stage} first)")
        return path

    def run_dir(self, stage: str, key_params: dict) -> str:
        """``<work_dir>/<stage>/run-<key>``: a trainer's outdir, one per ``key_params`` and input
        content of the stage's current record, so that other settings start a new run beside
        the old one and the same settings resume in place."""
        inputs = self.load_record(stage)["inputs"]
        content = {name: {rel: [v[0], v[2]] for rel, v in fp.items()} for name, fp in inputs.items()}
        key = hashlib.sha256(json.dumps([key_params, content], sort_keys=True).encode())
        return self.path(stage, f"run-{key.hexdigest()[:10]}")


_BANNER = re.compile(r"([^\w\s])\1{3,}")  # '!!!!!!' or '=====' rulers around a message


class _WarningCollector(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []

    def emit(self, record):
        if record.name == "py.warnings":  # third-party library chatter, not the run's warnings
            return
        message = " ".join(_BANNER.sub(" ", record.getMessage()).split())[:500]
        if message and message not in self.messages:
            self.messages.append(message)


@contextlib.contextmanager
def collect_warnings():
    """Collect every WARNING+ record logged (absl or Python logging) while active, on one line.

    Python ``warnings`` (deprecations and the like from libraries) are not collected.
    """
    collector = _WarningCollector()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield collector.messages
    finally:
        root.removeHandler(collector)


def format_seconds(seconds: float) -> str:
    """``'1m23s'`` style duration."""
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes}m{sec:02d}s" if minutes else f"{seconds:.1f}s"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _outputs_intact(ws: Workspace, record: dict) -> bool:
    for name, rel in record.get("outputs", {}).items():
        recorded = record.get("output_fingerprints", {}).get(name, {})
        current = fingerprint(ws.path(rel), recorded)
        if not current or not same_content(current, recorded):
            return False
    return True


def _may_resume(old: Optional[dict], params: dict, inputs_fp: dict, ignores) -> bool:
    if not old:
        return False
    strip = lambda p: {k: v for k, v in p.items() if k not in ignores}  # noqa: E731
    same_inputs = set(old.get("inputs", {})) == set(inputs_fp) and all(
        same_content(old["inputs"][k], v) for k, v in inputs_fp.items())
    return same_inputs and strip(old.get("params", {})) == strip(params)


def run_stage(stage: Stage, cfg, ws: Workspace, force: bool = False, index: str = "",
              out=sys.stdout) -> dict:
    """Run ``stage`` unless it is up to date; return its (new or existing) record.

    Prints ``skip <stage>: up to date`` when skipping, else a banner, and the elapsed time at the
    end. The record is written ``running`` before the body starts and ``complete`` after.
    """
    params = _jsonable(stage.params(cfg))
    old = ws.load_record(stage.name)
    old_inputs = (old or {}).get("inputs", {})
    inputs_fp = {name: fingerprint(path, old_inputs.get(name)) if path else {}
                 for name, path in stage.inputs(cfg, ws).items()}
    if (not force and old and old.get("status") == "complete"
            and _may_resume(old, params, inputs_fp, ()) and _outputs_intact(ws, old)):
        print(f"skip {stage.name}: up to date", file=out, flush=True)
        return old
    resume = not force and _may_resume(old, params, inputs_fp, stage.resume_ignores)
    record = {"stage": stage.name, "status": "running", "started": _now(), "params": params,
              "inputs": inputs_fp, "resumed": resume}
    ws.save_record(stage.name, record)
    print(f"==> {index}{stage.name}{' (resuming)' if resume else ''}", file=out, flush=True)
    start = time.time()
    with collect_warnings() as logged:
        result = stage.run(cfg, ws, resume=resume)
    elapsed = time.time() - start
    outputs = {name: ws.rel(path) for name, path in result.outputs.items()}
    record.update(
        status="complete", finished=_now(), elapsed_sec=round(elapsed, 3), outputs=outputs,
        output_fingerprints={name: fingerprint(ws.path(rel)) for name, rel in outputs.items()},
        result=_jsonable(result.result),
        warnings=list(dict.fromkeys(list(result.warnings) + logged)))
    ws.save_record(stage.name, record)
    print(f"<== {stage.name} done in {format_seconds(elapsed)}", file=out, flush=True)
    return record
