"""The red-line checker run over every text the bank sends a customer: marketing content
before a campaign may be approved or sent, the assistant's answers before they are shown.

Red lines of Chinese financial marketing and customer communication (the PBoC/CBIRC/CSRC
rules on financial product marketing and the Advertising Law's ban on absolute terms): no
promised principal or return, no "risk-free", no absolute superlatives; wealth products carry
a risk disclosure; loan offers disclose the annualized rate. The English versions of the same
terms are red lines too, since the bank answers in both languages. Every finding names its
rule and the offending span.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ABSOLUTE_SUPERLATIVES",
    "ANNUALIZED_RATE",
    "FORBIDDEN_CLAIMS",
    "RISK_DISCLOSURE",
    "Disclosure",
    "Finding",
    "Variant",
    "check",
    "check_text",
]

# Claims no financial communication may make (guaranteed principal/return, risk-free, sure win).
FORBIDDEN_CLAIMS = (
    "保本",
    "保收益",
    "保息",
    "无风险",
    "零风险",
    "稳赚",
    "稳赚不赔",
    "刚性兑付",
    "guaranteed return",
    "guaranteed returns",
    "guaranteed principal",
    "principal guaranteed",
    "risk-free",
    "risk free",
    "zero risk",
    "sure win",
    "can't lose",
)
# Absolute terms (Advertising Law art. 9(3)).
ABSOLUTE_SUPERLATIVES = (
    "最高",
    "最低",
    "最佳",
    "最好",
    "第一",
    "国家级",
    "顶级",
    "唯一",
    "best",
    "number one",
    "no. 1",
    "top-rated",
    "lowest",
    "highest",
    "unbeatable",
)
# A wealth offer must say so: "理财非存款，产品有风险，投资须谨慎" or at least the risk warning.
RISK_DISCLOSURE = re.compile(
    r"(产品有风险|投资有风险)[，,、\s]*投资须谨慎"
    r"|(investments?|products?) (carry|carries|involve|involves) risks?",
    re.IGNORECASE,
)
# A loan offer must state the annualized rate: "年化利率" followed by a percentage.
ANNUALIZED_RATE = re.compile(
    r"年化(利率)?[\uff08(]?(单利)?[)\uff09]?[:：\s]*\d+(\.\d+)?\s*%"
    r"|(annuali[sz]ed (interest )?rate|APR)( \(simple\))?( of| from)?[:\s]*\d+(\.\d+)?\s*%",
    re.IGNORECASE,
)


class Disclosure(StrEnum):
    """A disclosure the text must carry because of what it offers."""

    RISK = "risk"  # wealth (investment) products
    ANNUALIZED_RATE = "annualized_rate"  # loans


@dataclass(frozen=True)
class Finding:
    """One breach: the rule, where (variant, span) and why."""

    rule: str
    variant_id: str
    text: str
    start: int
    end: int
    message: str


@dataclass(frozen=True)
class Variant:
    """Content of one channel variant."""

    id: str
    channel: str
    title: str
    body: str

    @property
    def text(self) -> str:
        """The checked text: title and body, joined by a newline (spans index into it)."""
        return f"{self.title}\n{self.body}"


def _pattern(term: str) -> re.Pattern[str]:
    # English terms match as whole words, any case ("Best" but not "asbestos").
    if term.isascii():
        return re.compile(rf"(?<![A-Za-z]){re.escape(term)}(?![A-Za-z])", re.IGNORECASE)
    return re.compile(re.escape(term))


_CLAIMS = tuple((t, _pattern(t)) for t in sorted(FORBIDDEN_CLAIMS, key=len, reverse=True))
_SUPERLATIVES = tuple(
    (t, _pattern(t)) for t in sorted(ABSOLUTE_SUPERLATIVES, key=len, reverse=True)
)


def _spans(
    rule: str,
    terms: tuple[tuple[str, re.Pattern[str]], ...],
    variant_id: str,
    text: str,
    why: str,
) -> list[Finding]:
    found: list[Finding] = []
    # Longest terms first, so "稳赚不赔" is reported once and not also as "稳赚".
    taken: list[tuple[int, int]] = []
    for term, pattern in terms:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(s <= start < e for s, e in taken):
                continue
            taken.append((start, end))
            found.append(Finding(rule, variant_id, term, start, end, f"{why}: {term!r}"))
    return found


def check_text(
    text: str,
    *,
    disclosures: Collection[Disclosure] = (),
    annual_rate: str = "",
    variant_id: str = "",
) -> list[Finding]:
    """Every breach in ``text`` (spans index into it), given the disclosures the products it
    mentions require; empty means compliant."""
    findings = _spans(
        "forbidden_claim", _CLAIMS, variant_id, text, "promises principal, returns or no risk"
    )
    findings += _spans("absolute_superlative", _SUPERLATIVES, variant_id, text, "absolute term")
    if Disclosure.RISK in disclosures and not RISK_DISCLOSURE.search(text):
        findings.append(
            Finding(
                "missing_risk_disclosure",
                variant_id,
                "",
                -1,
                -1,
                "a wealth offer must carry '产品有风险，投资须谨慎'",
            )
        )
    if Disclosure.ANNUALIZED_RATE in disclosures and not ANNUALIZED_RATE.search(text):
        rate = f" {annual_rate}" if annual_rate else ""
        findings.append(
            Finding(
                "missing_annualized_rate",
                variant_id,
                "",
                -1,
                -1,
                f"a loan offer must state its annualized rate (年化利率{rate})",
            )
        )
    return sorted(findings, key=lambda f: (f.start, f.rule))


def check(
    variants: Iterable[Variant],
    *,
    disclosures: Collection[Disclosure] = (),
    annual_rate: str = "",
) -> list[Finding]:
    """Every breach in ``variants``; empty means compliant."""
    findings: list[Finding] = []
    for variant in variants:
        findings += check_text(
            variant.text,
            disclosures=disclosures,
            annual_rate=annual_rate,
            variant_id=variant.id,
        )
    return sorted(findings, key=lambda f: (f.variant_id, f.start, f.rule))
