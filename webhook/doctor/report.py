"""Doctor rows and how they are printed: a table for people, JSON for scripts."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # the check does not apply here (e.g. no device-plugin ConfigMap to read)


@dataclass(frozen=True)
class Row:
    """One finding: `check` is a stable id, `subject` the object it is about, `fix` what to do."""

    check: str
    status: Status
    subject: str
    message: str
    fix: str = ""


def passed(check: str, subject: str, message: str) -> Row:
    return Row(check, Status.PASS, subject, message)


def warned(check: str, subject: str, message: str, fix: str) -> Row:
    return Row(check, Status.WARN, subject, message, fix)


def failed(check: str, subject: str, message: str, fix: str) -> Row:
    return Row(check, Status.FAIL, subject, message, fix)


def skipped(check: str, subject: str, message: str) -> Row:
    return Row(check, Status.SKIP, subject, message)


def exit_code(rows: Sequence[Row]) -> int:
    """1 when any row failed, else 0 (warnings do not fail the run)."""
    return 1 if any(row.status is Status.FAIL for row in rows) else 0


def summary(rows: Sequence[Row]) -> dict[str, int]:
    return {status.value: sum(1 for r in rows if r.status is status) for status in Status}


def render_json(rows: Sequence[Row]) -> str:
    doc = {
        "rows": [{**asdict(row), "status": row.status.value} for row in rows],
        "summary": summary(rows),
        "ok": exit_code(rows) == 0,
    }
    return json.dumps(doc, indent=2) + "\n"


def render_table(rows: Sequence[Row], width: int = 100) -> str:
    """STATUS CHECK SUBJECT, then the message and the fix indented under each row."""
    check_w = max((len(r.check) for r in rows), default=5)
    lines: list[str] = []
    for row in rows:
        lines.append(f"{row.status.value.upper():<5} {row.check:<{check_w}} {row.subject}")
        indent = " " * 6
        lines += _wrap(row.message, width, indent, indent) or [indent]
        if row.fix:
            lines += _wrap(row.fix, width, indent + "fix: ", indent + "     ")
    counts = summary(rows)
    lines.append(
        f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed, "
        f"{counts['skip']} skipped"
    )
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    # Names and commands hold hyphens and may be longer than a line: never split them.
    return textwrap.wrap(
        text,
        width,
        initial_indent=first,
        subsequent_indent=rest,
        break_on_hyphens=False,
        break_long_words=False,
    )
