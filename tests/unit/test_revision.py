"""Which pull/merge request a commit came from, read from the message its forge wrote."""

from __future__ import annotations

import pytest

from agent.source import Revision


@pytest.mark.parametrize(("message", "expected"), [
    ("Merge pull request 'promote fraud: canary 13 at 10%' (#7) from promote/x into main\n\nbody", "#7"),  # Gitea
    ("Merge pull request #12 from acme/promote-x\n\npromote fraud", "#12"),  # GitHub merge commit
    ("promote fraud/fraud-scorer: canary 13 at 10% (#33)\n\nModel: fraud/fraud-scorer\n", "#33"),  # squash merge
    ("Merge branch 'promote' into 'main'\n\npromote\n\nSee merge request ml/models!4\n", "ml/models!4"),  # GitLab
    ("fix the (#3) typo in docs\n", ""),  # a number in the middle of a subject is not a PR
    ("promote fraud\n\nsee (#4)\n", ""),  # nor one in the body
    ("plain commit", ""),
    ("", ""),
])
def test_pull_request_of_a_merge_commit(message: str, expected: str) -> None:
    assert Revision(commit="a" * 40, message=message).pull_request == expected
