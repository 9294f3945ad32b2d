"""The compliance checker run before a campaign may be approved or sent.

Red lines of Chinese financial marketing (the PBoC/CBIRC/CSRC rules on financial product
marketing and the Advertising Law's ban on absolute terms): no promised principal or return,
no "risk-free", no absolute superlatives; wealth products carry a risk disclosure; loan offers
disclose the annualized rate. Every finding names its rule and the offending span.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zerocontact.marketing.domain.catalog import Product, ProductKind

# Claims no financial marketing may make (guaranteed principal/return, risk-free, sure win).
FORBIDDEN_CLAIMS = ("保本", "保收益", "保息", "无风险", "零风险", "稳赚", "稳赚不赔", "刚性兑付")
# Absolute terms (Advertising Law art. 9(3)).
ABSOLUTE_SUPERLATIVES = ("最高", "最低", "最佳", "最好", "第一", "国家级", "顶级", "唯一")
# A wealth offer must say so: "理财非存款，产品有风险，投资须谨慎" or at least the risk warning.
RISK_DISCLOSURE = re.compile(r"(产品有风险|投资有风险)[，,、\s]*投资须谨慎")
# A loan offer must state the annualized rate: "年化利率" followed by a percentage.
ANNUALIZED_RATE = re.compile(r"年化(利率)?[\uff08(]?(单利)?[)\uff09]?[:：\s]*\d+(\.\d+)?\s*%")


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


def _spans(rule: str, terms: tuple[str, ...], variant: Variant, why: str) -> list[Finding]:
    text = variant.text
    found: list[Finding] = []
    # Longest terms first, so "稳赚不赔" is reported once and not also as "稳赚".
    taken: list[tuple[int, int]] = []
    for term in sorted(terms, key=len, reverse=True):
        for match in re.finditer(re.escape(term), text):
            start, end = match.span()
            if any(s <= start < e for s, e in taken):
                continue
            taken.append((start, end))
            found.append(Finding(rule, variant.id, term, start, end, f"{why}: {term!r}"))
    return found


def check(variants: list[Variant], product: Product) -> list[Finding]:
    """Every breach in ``variants`` offering ``product``; empty means compliant."""
    findings: list[Finding] = []
    for variant in variants:
        findings += _spans(
            "forbidden_claim",
            FORBIDDEN_CLAIMS,
            variant,
            "promises principal, returns or no risk",
        )
        findings += _spans("absolute_superlative", ABSOLUTE_SUPERLATIVES, variant, "absolute term")
        if product.kind is ProductKind.WEALTH and not RISK_DISCLOSURE.search(variant.text):
            findings.append(
                Finding(
                    "missing_risk_disclosure",
                    variant.id,
                    "",
                    -1,
                    -1,
                    "a wealth offer must carry '产品有风险，投资须谨慎'",
                )
            )
        if product.kind is ProductKind.LOAN and not ANNUALIZED_RATE.search(variant.text):
            findings.append(
                Finding(
                    "missing_annualized_rate",
                    variant.id,
                    "",
                    -1,
                    -1,
                    f"a loan offer must state its annualized rate (年化利率 {product.annual_rate})",
                )
            )
    return sorted(findings, key=lambda f: (f.variant_id, f.start, f.rule))
