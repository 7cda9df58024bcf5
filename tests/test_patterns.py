"""Config patterns run in linear time (RE2): a hostile identity cannot freeze judging, and what RE2
cannot run in linear time, or what is too large or too deep, is refused with a reason."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from monitor.config import IdentityRule, WatchSettings
from monitor.identity import SigningIdentity
from monitor.patterns import MAX_NESTING, Pattern, PatternError, compile_pattern, nesting_depth
from monitor.policy import Policy

GITHUB = "https://token.actions.githubusercontent.com"
CATASTROPHIC = r"^https://github\.com/(a+)+$"
JUDGE_HOSTILE = f"""
import sys
from monitor.config import IdentityRule, WatchSettings
from monitor.identity import SigningIdentity
from monitor.policy import Policy
policy = Policy(WatchSettings(identities=[IdentityRule(issuer="{GITHUB}", identity_regexp=r"{CATASTROPHIC}")]))
for n in (30, 100, 10_000):
    hostile = SigningIdentity(provider="github", issuer="{GITHUB}", identity="https://github.com/" + "a" * n + "!")
    print(policy.judge(hostile, chain_verified=True).verdict)
"""


def test_a_catastrophic_pattern_judges_a_hostile_identity_at_once() -> None:
    # A backtracking engine needs minutes for 30 `a`s and would never finish 100; the process is
    # killed after the timeout instead of hanging the suite.
    result = subprocess.run(
        [sys.executable, "-c", JUDGE_HOSTILE], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["unwatched"] * 3


def test_the_policy_matches_whole_identities_only() -> None:
    rule = IdentityRule(issuer=GITHUB, identity_regexp=r"https://github\.com/myorg/.*", allow=[r".*/release\.yml"])
    policy = Policy(WatchSettings(identities=[rule]))

    def verdict(identity: str) -> str | None:
        judgement = policy.judge(
            SigningIdentity(provider="github", issuer=GITHUB, identity=identity), chain_verified=True
        )
        return judgement.verdict if judgement else None

    assert verdict("https://github.com/myorg/app/.github/workflows/release.yml") == "expected"
    assert verdict("https://github.com/myorg/app/.github/workflows/release.yml@refs/heads/x") == "unexpected_pipeline"
    assert verdict("evil https://github.com/myorg/app") == "unwatched"  # no substring match


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "backreferences"),
        (r"(?P<x>a)(?P=x)", "backreferences"),
        (r"(?<=a)b", "lookahead and lookbehind"),
        (r"a(?!b)", "lookahead and lookbehind"),
        (r"a\Z", "use \\z or $"),
        ("a" * 5_000_000, "is 5,000,000 bytes long; the limit is 4,096"),
        ("(" * 5000 + "a" + ")" * 5000, "the limit is 4,096"),
        ("(" * (MAX_NESTING + 1) + "a" + ")" * (MAX_NESTING + 1), f"nests groups {MAX_NESTING + 1} deep"),
        (".{1,1000}" * 3, "too complex"),
        ("(unclosed", "RE2 cannot compile it (missing )"),
    ],
)
def test_what_is_refused_says_why_without_echoing_it(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)
    message = str(caught.value)
    assert reason in message and len(message) < 300 and "\n" not in message


def test_a_compiled_pattern_pickles_as_its_text() -> None:
    pattern = compile_pattern(r"https://github\.com/(?P<org>[^/]+)/.*")
    copy = pickle.loads(pickle.dumps(pattern))
    assert isinstance(copy, Pattern) and copy == pattern
    assert copy.fullmatch("https://github.com/org/app") and not copy.fullmatch("https://github.com/org")
    assert not copy.fullmatch(None)


@pytest.mark.parametrize(
    ("pattern", "depth"),
    [("a", 0), ("(a(b))", 2), (r"\(\(a\)", 0), ("[(((]a", 0), ("[]((](x)", 1), ("[^](](x)", 1), (r"[\]((](x)", 1)],
)
def test_nesting_depth_ignores_escapes_and_classes(pattern: str, depth: int) -> None:
    assert nesting_depth(pattern) == depth
