"""Measured gains: how each expert answers each domain against the base model, and the routing
rule that reads them.

An expert that does not beat the base model on its own domain costs a call and loses answers:
measured on the single-domain files, the Qwen biology and medicine adapters did not beat their
base, and on the calibration split neither did SmolLM2's (docs/results/2026-12-06-routing.md).
`measure` answers calibration questions of every domain with every expert and with the
base model, the same questions for all, one call at a time so that the seconds per call are the
candidate's own; `Calibration` keeps, per domain, the base's right answers and, per expert, its
right answers and the ones only it or only the base got right (what a paired interval needs);
`ExpertStore.set_calibration` stores it in `store.json`. `Calibration.choose` is the router's
rule (`ExpertRouter`): of the experts whose measured gain on a part's domain D passes the
`GainRule`, the one with the largest gain answers the part (on a tie, the expert the similarity
chose, else the cheaper), so a costlier model takes D only where it is measured ahead of D's
own expert; when none passes, the base model answers. A
domain with too few questions to decide is judged by every domain's questions pooled: a thin
domain's own handful would let noise pick, and similarity alone would keep an expert the
measurements say loses.

Gains are kept per domain, not per region of the embedding space: a region (a k-means cell of
an expert's data) would need its own calibration questions, and the calibration split holds 15
to a few hundred per domain, too few to split further with a minimum count per cell.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from langchain_core.messages import HumanMessage

from compllm_graph.expert_store.records import CorruptStoreError, StoreError
from compllm_graph.types import BASE, display_name, message_text

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

Z95 = 1.959964
"""The normal quantile of a two-sided 95 % interval."""
MIN_ITEMS = 20
"""Calibration questions a domain needs before its gains decide a route (`GainRule`)."""


@dataclass(frozen=True)
class GainRule:
    """When a measured gain counts as positive.

    Attributes:
        min_items: A domain with fewer calibration questions is judged by all domains'
            questions pooled (`Calibration.pooled`); when even those are fewer, its parts are
            routed by similarity alone, as without calibration.
        interval: Require the 95 % interval of the paired gain to lie above 0 (a gain the
            data can call), not only the gain itself. Stricter: at 30 questions a gain must be
            near +20 points.
    """

    min_items: int = field(
        default=MIN_ITEMS,
        metadata={
            "help": "calibration questions a domain needs before its own gains decide a route; "
            "a domain with fewer is judged by all domains' questions pooled"
        },
    )
    interval: bool = field(
        default=False,
        metadata={
            "help": "count a gain only when the 95% interval of the paired gain lies above 0, "
            "not only the gain itself (stricter)"
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.min_items, bool) or not isinstance(self.min_items, int):
            raise StoreError(f"min_items must be an integer, got {self.min_items!r}")
        if self.min_items < 1:
            raise StoreError(f"min_items must be at least 1, got {self.min_items}")

    def passes(self, result: ExpertResult, n: int) -> bool:
        """Whether `result` (over `n` questions, at least `min_items`) beats the base model by
        this rule."""
        gain = result.gain(n)
        enough = n >= self.min_items
        return enough and gain > 0 and (not self.interval or result.interval(n)[0] > 0)

    def describe(self) -> str:
        """The rule in words."""
        test = "the 95 % interval of its gain lies above 0" if self.interval else "its gain > 0"
        return (
            f"an expert can take a domain's parts when {test}, on at least {self.min_items} "
            "items (a domain with fewer: on all domains' items); of those, the one with the "
            "largest gain takes them"
        )


@dataclass(frozen=True)
class ExpertResult:
    """One expert on one domain's calibration questions, paired with the base model's answers.

    Attributes:
        right: Questions the expert answered right.
        only_expert: Questions the expert got right and the base model wrong.
        only_base: Questions the base model got right and the expert wrong.
    """

    right: int
    only_expert: int
    only_base: int

    def gain(self, n: int) -> float:
        """Expert accuracy minus base accuracy on the same `n` questions."""
        return (self.only_expert - self.only_base) / n if n else 0.0

    def interval(self, n: int) -> tuple[float, float]:
        """The 95 % interval of the paired gain (normal approximation for paired proportions)."""
        if not n:
            return (0.0, 0.0)
        gain = self.gain(n)
        discordant = self.only_expert + self.only_base
        variance = max(discordant / n - gain * gain, 0.0) / n
        half = Z95 * math.sqrt(variance)
        return (round(gain - half, 4), round(gain + half, 4))


@dataclass(frozen=True)
class DomainResult:
    """Every candidate on one domain's calibration questions.

    Attributes:
        n: Calibration questions of the domain.
        base_right: Questions the base model answered right.
        experts: Expert name -> its result on the same questions.
    """

    n: int
    base_right: int
    experts: dict[str, ExpertResult] = field(default_factory=dict)


@dataclass(frozen=True)
class Choice:
    """What the gain rule makes of one route.

    Attributes:
        expert: The expert that answers, or None for the base model.
        reason: Why, in words (for `Route.reason`).
    """

    expert: str | None
    reason: str


@dataclass(frozen=True)
class Calibration:
    """Measured accuracy of every expert and of the base model on each domain.

    Attributes:
        model: The base model the measurements hold for (an adapter's gain is over its base).
        domains: Domain -> its results.
        owners: Expert -> the domain it serves: a part's domain is the domain of the most
            similar expert that owns one.
        seconds_per_call: Candidate (an expert, or `BASE`) -> mean seconds per answer.
        rule: The gain rule routers use unless given another.
        items: Where the calibration questions came from, in words.
        created: The date of the measurement (ISO).
    """

    model: str
    domains: dict[str, DomainResult]
    owners: dict[str, str]
    seconds_per_call: dict[str, float] = field(default_factory=dict)
    rule: GainRule = field(default_factory=GainRule)
    items: str = ""
    created: str = ""

    def result(self, expert: str, domain: str) -> ExpertResult | None:
        """`expert`'s result on `domain`, or None when it was not measured there."""
        found = self.domains.get(domain)
        return found.experts.get(expert) if found else None

    def domain_of(self, ranked: Iterable[str]) -> str | None:
        """The domain of the first expert in `ranked` (best first) that owns one, else None."""
        return next((self.owners[name] for name in ranked if name in self.owners), None)

    def choose(self, routed: str, ranked: Sequence[str], rule: GainRule | None = None) -> Choice:
        """Who answers a part the similarity routed to `routed`, by measured gains.

        Of the experts whose gain over the base model passes `rule` on the part's domain, the
        one with the largest gain answers (on a tie, `routed` keeps it, else the cheaper); when
        none passes, the base model answers. So a costlier candidate takes a domain only where
        it is measured ahead of the domain's own expert, and an expert that passes keeps its
        domain against candidates measured no better.

        Args:
            routed: The expert the similarity chose.
            ranked: The candidate experts, best first (the part's domain is the first owner's).
            rule: The rule; None: this calibration's.
        """
        rule = rule or self.rule
        domain = self.domain_of(ranked)
        if domain is None:
            return Choice(routed, "no calibrated domain among the candidates: routed by similarity")
        found, scope = self.domains[domain], domain
        if found.n < rule.min_items:
            thin = f"{domain} has {found.n} calibration items (< {rule.min_items})"
            found = self.pooled()
            if found.n < rule.min_items:
                return Choice(routed, f"{thin}, all domains {found.n}: routed by similarity")
            scope = f"all domains ({thin})"
        own = found.experts.get(routed)
        if own is None:
            return Choice(routed, f"{routed} was not calibrated on {scope}: routed by similarity")
        winners = [name for name, r in found.experts.items() if rule.passes(r, found.n)]
        if not winners:
            return Choice(
                None,
                f"no expert beats the base model on {scope} ({routed} "
                f"{self._versus_base(own, found)}): the base model answers",
            )
        # The largest gain wins; on a tie the routed expert keeps its part, else the cheaper.
        best = min(
            winners,
            key=lambda n: (-found.experts[n].right, n != routed, self.cost(n), n),
        )
        if best == routed:
            return Choice(routed, f"{routed} {self._versus_base(own, found)} on {scope}")
        return Choice(
            best,
            f"{routed} {self._versus_base(own, found)} on {scope}; {best} "
            f"{self._versus_base(found.experts[best], found)}{self._cost_note(best)}",
        )

    def pooled(self) -> DomainResult:
        """Every domain's questions as one: what a domain with too few questions of its own is
        judged by. Only experts measured on every domain are kept (their counts add up)."""
        domains = list(self.domains.values())
        everywhere = set.intersection(*(set(d.experts) for d in domains)) if domains else set()
        return DomainResult(
            sum(d.n for d in domains),
            sum(d.base_right for d in domains),
            {
                name: ExpertResult(
                    *(sum(counts) for counts in zip(*(_counts(d.experts[name]) for d in domains)))
                )
                for name in sorted(everywhere)
            },
        )

    def cost(self, name: str) -> float:
        """Measured seconds per call of `name` (infinite when not measured)."""
        return self.seconds_per_call.get(name, math.inf)

    def _cost_note(self, name: str) -> str:
        cost = self.seconds_per_call.get(name)
        return "" if cost is None else f", at {cost:.2f} s a call"

    @staticmethod
    def _versus_base(result: ExpertResult, domain: DomainResult) -> str:
        low, high = result.interval(domain.n)
        return (
            f"{result.gain(domain.n):+.1%} [{low:+.1%}, {high:+.1%}] against the base model "
            f"({result.right}/{domain.n} vs {domain.base_right}/{domain.n})"
        )

    def without(self, expert: str) -> Calibration:
        """This calibration with `expert`'s measurements left out (the expert was removed)."""
        domains = {
            name: replace(d, experts={e: r for e, r in d.experts.items() if e != expert})
            for name, d in self.domains.items()
        }
        return replace(
            self,
            domains=domains,
            owners={e: d for e, d in self.owners.items() if e != expert},
            seconds_per_call={e: s for e, s in self.seconds_per_call.items() if e != expert},
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `store.json`."""
        return {
            "model": self.model,
            "created": self.created,
            "items": self.items,
            "rule": {"min_items": self.rule.min_items, "interval": self.rule.interval},
            "owners": dict(sorted(self.owners.items())),
            "seconds_per_call": {k: round(v, 4) for k, v in sorted(self.seconds_per_call.items())},
            "domains": {
                name: {
                    "n": d.n,
                    "base_right": d.base_right,
                    "experts": {
                        e: {
                            "right": r.right,
                            "only_expert": r.only_expert,
                            "only_base": r.only_base,
                        }
                        for e, r in sorted(d.experts.items())
                    },
                }
                for name, d in sorted(self.domains.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        """The calibration `to_dict` wrote.

        Raises:
            CorruptStoreError: a field is missing, has the wrong type, or the counts disagree.
        """
        try:
            calibration = cls(
                model=str(data["model"]),
                created=str(data.get("created", "")),
                items=str(data.get("items", "")),
                rule=GainRule(int(data["rule"]["min_items"]), bool(data["rule"]["interval"])),
                owners={str(e): str(d) for e, d in data["owners"].items()},
                seconds_per_call={str(k): float(v) for k, v in data["seconds_per_call"].items()},
                domains={str(name): _domain_from(d) for name, d in data["domains"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError, StoreError) as exc:
            raise CorruptStoreError(f"the store's calibration is malformed: {exc!r}") from None
        calibration.check()
        return calibration

    def check(self, experts: Iterable[str] | None = None) -> None:
        """Raise unless the counts are consistent and every owner's domain was measured.

        Args:
            experts: The store's experts; when given, every expert named must be one of them.

        Raises:
            CorruptStoreError: inconsistent counts, or an owner of an unmeasured domain.
            StoreError: an expert the store does not have (with `experts`).
        """
        for name, d in self.domains.items():
            counts = [d.base_right, *(v for r in d.experts.values() for v in _counts(r))]
            if d.n < 0 or any(c < 0 or c > d.n for c in counts):
                raise CorruptStoreError(f"calibration of {name!r}: counts outside 0..{d.n}")
            for expert, r in d.experts.items():
                if r.right - r.only_expert != d.base_right - r.only_base:
                    raise CorruptStoreError(
                        f"calibration of {expert!r} on {name!r}: the paired counts disagree"
                    )
        unmeasured = sorted(set(self.owners.values()) - set(self.domains))
        if unmeasured:
            raise CorruptStoreError(f"calibration: owners of unmeasured domains {unmeasured}")
        if experts is not None:
            named = {*self.owners, *(e for d in self.domains.values() for e in d.experts)}
            named |= set(self.seconds_per_call) - {BASE}
            unknown = sorted(named - set(experts))
            if unknown:
                raise StoreError(
                    f"the calibration names experts the store does not have: {unknown}"
                )


def _counts(result: ExpertResult) -> tuple[int, int, int]:
    return (result.right, result.only_expert, result.only_base)


def _domain_from(data: Mapping[str, Any]) -> DomainResult:
    return DomainResult(
        n=int(data["n"]),
        base_right=int(data["base_right"]),
        experts={
            str(e): ExpertResult(int(r["right"]), int(r["only_expert"]), int(r["only_base"]))
            for e, r in data["experts"].items()
        },
    )


@dataclass(frozen=True)
class Question:
    """One calibration question.

    Attributes:
        text: The question as a model reads it (options included).
        gold: What `is_right` scores a reply against (the answer, the options).
    """

    text: str
    gold: Mapping[str, Any]


Scorer = Callable[[str, Mapping[str, Any]], bool]
"""Whether a reply's text answers a question's gold."""


def measure(
    answerers: Mapping[str, Runnable],
    questions: Mapping[str, Sequence[Question]],
    is_right: Scorer,
    *,
    model: str,
    owners: Mapping[str, str],
    rule: GainRule | None = None,
    items: str = "",
    progress: Callable[[str], None] | None = None,
) -> Calibration:
    """Answer every domain's questions with every answerer, one call at a time, and tally.

    Args:
        answerers: `BASE` -> the base model as the graph asks it, and expert name -> its chat
            model (`ExpertStore.chat_models`).
        questions: Domain -> its calibration questions.
        is_right: Scores a reply against a question's gold.
        model: The base model's name, kept with the measurements.
        owners: Expert -> the domain it serves.
        rule: The gain rule to keep with the measurements (None: `GainRule()`).
        items: Where the questions came from, in words.
        progress: Called with a line after each candidate finishes a domain.

    Raises:
        StoreError: no `BASE` answerer, no questions, or an owner of a domain with none.
    """
    if BASE not in answerers:
        raise StoreError(f"calibration needs the base model among the answerers (key {BASE!r})")
    if not any(questions.values()):
        raise StoreError("calibration needs questions")
    missing = sorted(set(owners.values()) - {d for d, qs in questions.items() if qs})
    if missing:
        raise StoreError(f"no calibration questions for the owned domains {missing}")
    seconds: dict[str, list[float]] = {name: [] for name in answerers}
    domains = {}
    for domain, asked in sorted(questions.items()):
        if not asked:
            continue
        marks = {}
        for name, chat in answerers.items():
            marks[name] = [_answer(chat, q, is_right, seconds[name]) for q in asked]
            if progress:
                progress(f"{domain}: {name} {sum(marks[name])}/{len(asked)} right")
        base = marks[BASE]
        domains[domain] = DomainResult(
            n=len(asked),
            base_right=sum(base),
            experts={
                name: ExpertResult(
                    right=sum(mine),
                    only_expert=sum(m and not b for m, b in zip(mine, base)),
                    only_base=sum(b and not m for m, b in zip(mine, base)),
                )
                for name, mine in marks.items()
                if name != BASE
            },
        )
    return Calibration(
        model=model,
        domains=domains,
        owners=dict(owners),
        seconds_per_call={n: sum(s) / len(s) for n, s in seconds.items() if s},
        rule=rule or GainRule(),
        items=items,
        created=date.today().isoformat(),
    )


def _answer(chat: Runnable, question: Question, is_right: Scorer, seconds: list[float]) -> bool:
    started = time.perf_counter()
    reply = chat.invoke([HumanMessage(question.text)])
    seconds.append(time.perf_counter() - started)
    return is_right(message_text(reply), question.gold)


def report_lines(calibration: Calibration) -> list[str]:
    """The calibration as text: per domain, base and every expert, with gains and costs."""
    lines = [
        f"calibration for {calibration.model} ({calibration.created}; {calibration.items})",
        f"rule: {calibration.rule.describe()}",
    ]
    owned = {d: e for e, d in calibration.owners.items()}
    for name, d in sorted(calibration.domains.items()):
        owner = owned.get(name)
        lines.append(
            f"  {name} (n={d.n}, owner {owner or '-'}): base {d.base_right}/{d.n}"
            f"{_seconds(calibration, BASE)}"
        )
        for expert, r in sorted(d.experts.items()):
            low, high = r.interval(d.n)
            mark = " *" if calibration.rule.passes(r, d.n) else ""
            lines.append(
                f"    {expert:<16} {r.right}/{d.n}  gain {r.gain(d.n):+.1%} [{low:+.1%}, "
                f"{high:+.1%}]{_seconds(calibration, expert)}{mark}"
            )
        if owner is not None:
            choice = calibration.choose(owner, [owner])
            lines.append(f"    -> {display_name(choice.expert)}: {choice.reason}")
    lines.append(
        "  *: beats the base model by the rule; ->: who answers a part routed to the owner"
    )
    return lines


def _seconds(calibration: Calibration, name: str) -> str:
    cost = calibration.seconds_per_call.get(name)
    return "" if cost is None else f", {cost:.2f} s/call"


__all__ = [
    "MIN_ITEMS",
    "Calibration",
    "Choice",
    "DomainResult",
    "ExpertResult",
    "GainRule",
    "Question",
    "Scorer",
    "measure",
    "report_lines",
]
