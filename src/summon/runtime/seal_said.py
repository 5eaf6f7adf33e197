"""Which of the seal's refusals are said on the console, and how many were not.

Each distinct refusal is said once. The lines are bounded per rule (PER_RULE distinct ones),
not in all: an app that fills the quota of one rule (a thousand distinct paths written to,
say) cannot make the first refusal of another rule go unsaid. Past a rule's quota one line
says so, and the instance's end says how many refusals of each rule went unsaid. What is
refused does not depend on any of this: the lines are for the operator.

Image-side: stdlib only.
"""

from __future__ import annotations

PER_RULE = 20  # distinct lines said per rule, at most
# The subjects of a seal.code refusal that name a file (seal_hook.py writes them so).
CODE_FROM = ("compile of code from '", "exec of code from '")


def written_code_hint(what: str, writable: tuple[str, ...]) -> str | None:
    """What to do about code refused for coming from a file where the app writes (a Jinja2
    FileSystemLoader over a volume, a template saved to /tmp): no build saw that file, so no
    warm-up or learning can let its code through. None for any other refusal."""
    for prefix in CODE_FROM:
        if what.startswith(prefix) and what.endswith("'"):
            path = what[len(prefix) : -1]
            for folder in writable:
                if path.startswith(folder + "/"):
                    return (
                        f"{path} is under {folder}, written after the build, and the seal "
                        "makes code only of files the image ships, whatever is warmed up: "
                        "put the file in the app's folder (files beside its code go into "
                        "the image) and build again; an app whose users bring their own "
                        'templates needs seal = "audit"'
                    )
    return None


class Said:
    """The refusals said so far, by rule (a rule is its full text, "seal.code: ...")."""

    def __init__(self) -> None:
        self.lines: set[tuple[str, str]] = set()
        self.told: dict[str, int] = {}
        self.full: set[str] = set()  # rules whose quota is reached, and said to be
        self.untold: dict[str, int] = {}

    def tell(self, what: str, rule: str) -> str | None:
        """What to say of this refusal now: `what` for a new one within its rule's quota,
        a line saying that the quota is reached (once per rule), else None."""
        if (what, rule) in self.lines:
            return None
        told = self.told.get(rule, 0)
        if told < PER_RULE:
            self.lines.add((what, rule))
            self.told[rule] = told + 1
            return what
        if rule in self.full:
            self.untold[rule] = self.untold.get(rule, 0) + 1
            return None
        self.full.add(rule)
        return (
            f"{what}; past {PER_RULE} different refusals by this rule, the rest are "
            "counted, not said one by one (their count is said at the end)"
        )

    def summary(self) -> str | None:
        """The line the instance's end says, when refusals went unsaid."""
        if not self.untold:
            return None
        counts = ", ".join(
            f"{n} by {rule.partition(':')[0]}" for rule, n in sorted(self.untold.items())
        )
        return (
            f"sealed: {sum(self.untold.values())} more refusals were not said one by one ({counts})"
        )
