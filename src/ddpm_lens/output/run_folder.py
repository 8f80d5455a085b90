"""The run's output folder: checked before any work, where each figure goes, which of its
files ddpm-lens may replace or remove, and how a finished run is moved into it.

The folder belongs to the user. A run replaces or removes only what an earlier ddpm-lens run
wrote: the files its record (``manifest.json``, the report's ``summary.json``, ``evaluate``'s
``evaluation.json``: each a ``run_id`` and its ``files``) lists, and figures that carry a run
id (:data:`RUN_ID_KEY`). A run is written into a hidden folder beside the earlier one,
``OUT/.ddpm-lens-run-<run id>``, and swapped in only once it is whole, so a run that fails
(a full disk) or is killed leaves the earlier run as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

from ddpm_lens.output.png import read_png_text
from ddpm_lens.util.atomic import check_writable, write_text
from ddpm_lens.util.errors import UserError

# The visualizer's PNGs: inputs per sample, one comparison figure per condition and layer.
FIGURE_GLOBS = ("sample_*/input_*.png", "sample_*/*/*_baseline_vs_curriculum.png")
RUN_ID_KEY = "ddpm-lens run"  # the PNG tEXt key of a figure's run id
REPORT_FILES = ("summary.csv", "summary.json", "hypotheses.json", "index.html")  # and plots/
RECORDS = ("manifest.json", "summary.json", "evaluation.json")  # whose "files" a run owns
STAGE_PREFIX = ".ddpm-lens-run-"
_STAGE = re.compile(re.escape(STAGE_PREFIX) + r"[0-9a-f]{16}")


def figure_path(sample: int, condition: str, layer: str) -> str:
    return f"sample_{sample}/{condition}/{layer}_baseline_vs_curriculum.png"


def figure_files(out: Path) -> list[str]:
    """Every visualizer PNG in ``out`` (relative POSIX paths, sorted), whichever run drew it."""
    return sorted({p.relative_to(out).as_posix() for pattern in FIGURE_GLOBS for p in out.glob(pattern)})


def check_output_dir(out_dir: str | os.PathLike, *, create: bool = True) -> Path:
    """``out_dir`` (created if ``create``) once a file can be written in it (else a UserError)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--output_dir {out} is a file: pass a folder path")
    check_writable(out, flag="--output_dir")
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create --output_dir {out}: {exc.strerror}") from None
    return out


def missing_dirs(out: Path) -> list[Path]:
    """The folders of ``out``'s path that do not exist yet, outermost first (what a run creates)."""
    return [p for p in reversed([out, *out.absolute().parents]) if not p.exists()]


def remove_dirs(created: list[Path]) -> None:
    """Remove the folders a failed run created (innermost first), those it left empty."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _record_files(path: Path) -> list[str] | None:
    """The files a ddpm-lens record lists (itself included); None for any other file."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("run_id"), str):
        return None
    files = record.get("files") if isinstance(record.get("files"), list) else []
    return [path.name, *(rel for rel in files if isinstance(rel, str) and _inside(rel))]


def _inside(rel: str) -> bool:
    return not Path(rel).is_absolute() and ".." not in Path(rel).parts


def owned_files(out: Path, records: tuple[str, ...] = RECORDS) -> set[str]:
    """The files in ``out`` that an earlier ddpm-lens run wrote (relative POSIX paths): those
    that ``records`` list, and figures that carry a run id. Nothing else may be replaced or removed."""
    owned: set[str] = set()
    for name in records:
        owned.update(_record_files(out / name) or ())
    for rel in figure_files(out):
        with contextlib.suppress(OSError):
            if RUN_ID_KEY in read_png_text(out / rel):
                owned.add(rel)
    return {rel for rel in owned if (out / rel).is_file()}


def check_replaceable(out: Path, names, owned: set[str], *, flag: str) -> None:
    """A UserError if a file this run would write in ``out`` is there and no ddpm-lens run wrote it."""
    clash = sorted(rel for rel in set(names) if os.path.lexists(out / rel) and rel not in owned)
    if clash:
        more = f" and {len(clash) - 1} more files" if len(clash) > 1 else ""
        raise UserError(
            f"{flag} {out} holds {clash[0]}{more} that no ddpm-lens run wrote, which this run would "
            f"replace: move them, or pass another {flag}"
        )


def stage_dir(out: Path, run_id: str) -> Path:
    """Where the run ``run_id`` is written until it is whole."""
    return out / f"{STAGE_PREFIX}{run_id}"


def remove_stale_stages(out: Path) -> None:
    """The folders of runs that were killed before their swap (they carry their run id);
    call it only while holding the folder's lock."""
    for stage in out.glob(f"{STAGE_PREFIX}*"):
        if _STAGE.fullmatch(stage.name) and stage.is_dir():
            shutil.rmtree(stage, ignore_errors=True)


def swap_in(out: Path, stage: Path, files: list[str], *, flag: str = "--output_dir") -> None:
    """Move the whole run in ``stage`` (``files``, with ``manifest.json``) into ``out``: the
    earlier run's files are replaced, or removed where this run does not rewrite them. While it
    moves, ``out/manifest.json`` says ``"running"``; renames need no space, so a full disk
    cannot stop it half-way."""
    earlier = owned_files(out, records=("manifest.json", "summary.json"))
    check_replaceable(out, [*files, "manifest.json"], owned_files(out), flag=flag)
    manifest = json.loads((stage / "manifest.json").read_text(encoding="utf-8"))
    write_text(out / "manifest.json", json.dumps({**manifest, "status": "running"}, indent=2) + "\n")
    for rel in files:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / rel, out / rel)
    stale = sorted(earlier - {*files, "manifest.json"})
    for rel in stale:
        (out / rel).unlink(missing_ok=True)
    for folder in sorted({(out / rel).parent for rel in stale}, key=lambda p: len(p.parts), reverse=True):
        while folder != out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    os.replace(stage / "manifest.json", out / "manifest.json")
    shutil.rmtree(stage, ignore_errors=True)
