"""The commit-message rule (scripts/check_commit_messages.py): subject ≤ 72 characters, then a
blank line."""

from __future__ import annotations

import importlib.util
import pathlib

_SCRIPT = pathlib.Path(__file__).parents[1] / "scripts" / "check_commit_messages.py"
_spec = importlib.util.spec_from_file_location("check_commit_messages", _SCRIPT)
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


def test_a_short_subject_a_blank_line_and_a_body_pass():
    assert check.problems("Fix the pool kernel's last window\n\nWhy and how.\n") == []
    assert check.problems("Subject only\n") == []
    assert check.problems("Subject\n\n# git's comment lines are not the message\n") == []


def test_long_subjects_missing_blank_lines_and_empty_messages_are_named():
    assert check.problems("x" * 73) == ["a subject of 73 characters (at most 72)"]
    assert check.problems("Subject\nbody right below") == ["no blank line after the subject"]
    assert check.problems("\n\nbody") == ["an empty subject"]
