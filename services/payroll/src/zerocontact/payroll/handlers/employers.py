"""Onboarding an employer, authorising agents, and who may act for an employer."""

from __future__ import annotations

from datetime import UTC, datetime

from zerocontact.payroll import events
from zerocontact.payroll.domain import accounts
from zerocontact.payroll.domain.aggregates import Agent, Employer
from zerocontact.payroll.domain.errors import NotVerified
from zerocontact.payroll.handlers.context import Context
from zerocontact.payroll.repository import EMPLOYERS
from zerocontact.platform.auth import Principal
from zerocontact.platform.errors import Forbidden, NotFound, NotYetKnown
from zerocontact.platform.ledger import Side
from zerocontact.platform.money import Money


async def employer(ctx: Context, employer_id: str) -> Employer:
    """The employer, or 404."""
    found = await ctx.repo.employer(employer_id)
    if found is None:
        raise NotFound(f"employer {employer_id} is not onboarded")
    return found


def may_act(owner: Employer, principal: Principal) -> bool:
    """The enterprise's legal representative, or the representative of an authorised agent."""
    return owner.may_act(principal.subject)


async def acting_employer(ctx: Context, employer_id: str, principal: Principal) -> Employer:
    """The employer, if ``principal`` may act for it; 403 otherwise."""
    owner = await employer(ctx, employer_id)
    if not may_act(owner, principal):
        raise Forbidden("you may not act for this employer")
    return owner


async def onboard_employer(
    ctx: Context,
    *,
    employer_id: str,
    principal: Principal,
    maker_checker: bool,
    sweep_threshold: Money | None,
) -> Employer:
    """Open the wallet of a VERIFIED enterprise; only its legal representative may ask."""
    # Identity's events may still be on their way (registered or verified a moment ago):
    # wait for them, bounded, instead of refusing what a retry would accept.
    waited = await ctx.party_waits.until(
        employer_id,
        lambda: ctx.repo.party(employer_id),
        lambda p: p is not None and p.kind == "enterprise" and p.verified,
    )
    party = waited.value
    if party is None or party.kind != "enterprise":
        raise NotYetKnown(
            f"payroll has not yet heard of enterprise {employer_id} from identity "
            f"(waited {ctx.party_waits.within_s:g} s); retry shortly",
            party_id=employer_id,
            retry_after_s=1.0,
        )
    if not party.verified:
        raise NotVerified(
            "the enterprise is not VERIFIED yet", retry_after_s=ctx.party_waits.within_s
        )
    if party.legal_representative_id != principal.subject:
        raise Forbidden("only the enterprise's legal representative may onboard it")
    for account in (
        accounts.wallet(employer_id),
        accounts.money_market(employer_id),
        accounts.gig_hold(employer_id),
    ):
        await ctx.ledger.open_account(account, currency=ctx.currency, normal_balance=Side.CREDIT)
    now = datetime.now(UTC)
    event = events.employer_onboarded(
        topic=ctx.topic,
        employer_id=employer_id,
        name=party.name,
        wallet_account=accounts.wallet(employer_id),
        at=now,
    )
    new = Employer(
        employer_id=employer_id,
        name=party.name,
        representative_id=party.legal_representative_id,
        maker_checker=maker_checker,
        sweep_threshold_minor=(
            sweep_threshold.minor_units if sweep_threshold is not None else None
        ),
        agents={},
        onboarded_at=now,
    )
    if await ctx.repo.add_employer(new, [event]):
        ctx.relay.nudge(EMPLOYERS, employer_id)
    return await employer(ctx, employer_id)


async def authorise_agent(
    ctx: Context, *, employer_id: str, agent_id: str, principal: Principal
) -> Employer:
    """Let an HR platform (a VERIFIED enterprise) act for the employer."""
    owner = await employer(ctx, employer_id)
    if owner.representative_id != principal.subject:
        raise Forbidden("only the employer's legal representative may authorise agents")
    if agent_id in owner.agents:
        return owner
    agent = await ctx.repo.party(agent_id)
    if agent is None or not agent.verified:
        raise NotVerified("the HR platform is unknown or not VERIFIED")
    now = datetime.now(UTC)
    event = events.agent_authorised(
        topic=ctx.topic, employer_id=employer_id, agent_id=agent_id, actor=principal.subject, at=now
    )
    await ctx.repo.add_agent(owner, agent_id, Agent(agent.legal_representative_id, now), [event])
    ctx.relay.nudge(EMPLOYERS, employer_id)
    return await employer(ctx, employer_id)
