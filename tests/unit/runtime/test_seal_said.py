"""seal_said.Said: which refusals the seal says, bounded per rule and not in all."""

from __future__ import annotations

from summon.runtime.seal_hook import RULE_CODE, RULE_WRITE
from summon.runtime.seal_said import PER_RULE, Said


def test_each_refusal_is_said_once() -> None:
    said = Said()
    assert said.tell("exec of code from '<string>'", RULE_CODE) == "exec of code from '<string>'"
    assert said.tell("exec of code from '<string>'", RULE_CODE) is None
    assert said.summary() is None  # a repeat is not an unsaid refusal


def test_a_full_rule_does_not_silence_another_and_the_end_counts_the_rest() -> None:
    said = Said()
    lines = [said.tell(f"open('/dev/x{i}') for writing", RULE_WRITE) for i in range(100)]
    told = [line for line in lines if line is not None]
    assert len(told) == PER_RULE + 1
    assert "the rest are counted" in str(told[-1])
    assert said.tell("exec of code from '<string>'", RULE_CODE) == "exec of code from '<string>'"
    untold = 100 - PER_RULE - 1
    assert said.summary() == (
        f"sealed: {untold} more refusals were not said one by one ({untold} by seal.write)"
    )
