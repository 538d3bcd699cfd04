"""The task database (doit's JSON format, in the build dir): reading it safely, writing it atomically.

An unreadable or ill-shaped database is started afresh with one warning: every task then checks
its inputs again, which is always safe.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from venvstacks.errors import StackError

__all__ = ["db_shape_problem", "load_task_db", "repair_task_db", "write_atomically"]

_log = logging.getLogger(__name__)

_SPECIAL_KEYS: dict[str, Callable[[object], bool]] = {
    "_values_:": lambda v: isinstance(v, dict),
    "checker:": lambda v: isinstance(v, str),
    "ignore:": lambda v: isinstance(v, str),
    "result:": lambda v: isinstance(v, str | dict),
    "deps:": lambda v: isinstance(v, list) and all(isinstance(d, str) for d in v),
}


def _is_file_state(value: object) -> bool:
    """doit's MD5 checker state of a file dependency: [mtime, size, md5]."""
    if not isinstance(value, list) or len(value) != 3:
        return False
    mtime, size, md5 = value
    return (
        isinstance(mtime, int | float)
        and not isinstance(mtime, bool)
        and isinstance(size, int)
        and not isinstance(size, bool)
        and isinstance(md5, str)
    )


def db_shape_problem(data: object) -> str | None:
    """What is wrong with the shape of a decoded task database, or None when it is usable."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    for task, entry in data.items():
        if not isinstance(entry, dict):
            return f"the entry of {task} is not an object"
        for key, value in entry.items():
            check = _SPECIAL_KEYS.get(key, _is_file_state)
            if not check(value):
                return f"the entry of {task} has an invalid {key!r}"
    return None


def load_task_db(path: Path, shown_as: Path | None = None) -> dict[str, Any]:
    """A task database's content; an unreadable or ill-shaped one is started afresh (warning).

    Starting afresh is always safe: every task then checks its inputs again.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if path.is_dir():
            raise StackError(
                f"the task database {shown_as or path} is a folder; remove it"
            ) from None
    else:
        try:
            data = json.loads(text)
        except ValueError:
            problem = "not valid JSON" if text.strip() else "empty"
        else:
            problem = db_shape_problem(data) or ""
            if not problem:
                assert isinstance(data, dict)
                return data
    _log.warning(
        "warning: the task database %s is damaged (%s); starting afresh: every task checks "
        "its inputs again",
        shown_as or path,
        problem,
    )
    return {}


def repair_task_db(path: Path) -> bool:
    """Replace a damaged task database by an empty one (for plain doit); True when it was."""
    if not path.exists() or db_shape_problem(_read_json(path)) is None:
        return False
    load_task_db(path)  # warns
    write_atomically(path, "{}")
    return True


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path` and rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
