"""Recorded files as callbacks and Agora's answers report them: one entry per file name, merged so that the
order and repetition of reports never matter.

A file keeps its best status (uploaded > backed_up > recorded; on a tie, the smallest source, so the result
does not depend on arrival order) and, for each detail (track type, uid, slice start), the smallest value
reported. Callbacks that report files: 4 (playlist), 31 (uploaded), 32 (backed up), 45 (screenshot), 71 (web
recorder stopped, with its files).
"""

from __future__ import annotations

from typing import Any

import msgspec

from workers.agora.responses import parse_files

FILE_RANK = {"recorded": 1, "backed_up": 2, "uploaded": 3}


class FileEntry(msgspec.Struct, kw_only=True):
    """One file of a manifest."""

    name: str
    sid: str
    status: str  # recorded | backed_up | uploaded
    track_type: str | None = None
    uid: str | None = None
    slice_start_time: int | None = None
    source: str = ""  # what last improved it: an event type or an API answer

    def public(self) -> dict[str, Any]:
        """The API view."""
        return {
            "fileName": self.name,
            "sid": self.sid,
            "status": self.status,
            "trackType": self.track_type,
            "uid": self.uid,
            "sliceStartTime": self.slice_start_time,
            "source": self.source,
        }


def merged(held: FileEntry | None, entry: FileEntry) -> FileEntry:
    """The better of two reports of one file, as a new entry (commutative, associative, idempotent)."""
    if held is None:
        return entry
    held_key = (-FILE_RANK.get(held.status, 0), held.source)
    entry_key = (-FILE_RANK.get(entry.status, 0), entry.source)
    best = held if held_key <= entry_key else entry

    def smallest(name: str) -> Any:
        values = [v for v in (getattr(held, name), getattr(entry, name)) if v is not None]
        return min(values) if values else None

    return FileEntry(
        name=held.name,
        sid=held.sid,
        status=best.status,
        source=best.source,
        track_type=smallest("track_type"),
        uid=smallest("uid"),
        slice_start_time=smallest("slice_start_time"),
    )


def merge_file(files: dict[str, FileEntry], entry: FileEntry) -> bool:
    """Add or improve a file in ``files``; True if something changed."""
    held = files.get(entry.name)
    better = merged(held, entry)
    if better == held:
        return False
    files[entry.name] = better
    return True


def files_from_event(sid: str, event_type: int, details: dict[str, Any]) -> list[FileEntry]:
    """The files one callback reports."""
    status = {31: "uploaded", 32: "backed_up"}.get(event_type, "recorded")
    if event_type == 45:
        reported = parse_files([{"fileName": details.get("fileName")}])
    elif event_type in (4, 31, 32, 71):
        reported = parse_files(details.get("fileList"))
    else:
        return []
    return [
        FileEntry(
            name=f.file_name,
            sid=sid,
            status=status,
            track_type=f.track_type,
            uid=f.uid,
            slice_start_time=f.slice_start_time,
            source=str(event_type),
        )
        for f in reported
    ]
