"""Commit messages: a subject of at most 72 characters, then a blank line and a body.

`python scripts/check_commit_messages.py [REVISIONS]` checks the commits in REVISIONS (default:
every commit since the rule began, `RULE_SINCE..HEAD`) and lists each one that breaks it;
`--message FILE` checks one message (the `commit-msg` hook in `.githooks/` runs that; enable
it with `git config core.hooksPath .githooks`)."""

from __future__ import annotations

import subprocess
import sys

RULE_SINCE = "41a6a1c"  # the last commit before the rule: older subjects run long
MAX_SUBJECT = 72


def problems(message):
    lines = message.rstrip("\n").split("\n")
    lines = [line for line in lines if not line.startswith("#")]  # git's template comments
    found = []
    if not lines or not lines[0].strip():
        return ["an empty subject"]
    if len(lines[0]) > MAX_SUBJECT:
        found.append(f"a subject of {len(lines[0])} characters (at most {MAX_SUBJECT})")
    if len(lines) > 1 and lines[1].strip():
        found.append("no blank line after the subject")
    return found


def _commits(revisions):
    out = subprocess.run(["git", "log", "--format=%h%x00%B%x01", revisions], check=True,
                         capture_output=True, text=True).stdout
    for entry in out.split("\x01"):
        if entry.strip():
            sha, message = entry.strip("\n").split("\x00", 1)
            yield sha, message


def main(argv):
    if argv[:1] == ["--message"]:
        with open(argv[1], encoding="utf-8") as f:
            bad = problems(f.read())
        for why in bad:
            print(f"commit message: {why}", file=sys.stderr)
        return 1 if bad else 0
    revisions = argv[0] if argv else f"{RULE_SINCE}..HEAD"
    bad = [(sha, why) for sha, message in _commits(revisions) for why in problems(message)]
    for sha, why in bad:
        print(f"{sha}: {why}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
