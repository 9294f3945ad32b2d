"""Applications: a party applies, the risk assessment decides."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from zerocontact.loan import events, metrics
from zerocontact.loan.domain import loans as domain
from zerocontact.loan.domain.decisions import Assessment, PartyFacts, decide
from zerocontact.loan.domain.errors import IdempotencyConflict, PartyNotVerified
from zerocontact.loan.domain.loans import Application
from zerocontact.loan.domain.products import KycLevel
from zerocontact.loan.handlers.context import MAX_ATTEMPTS, LoanDeps, not_yet_known
from zerocontact.loan.repository import APPLICATIONS, ConcurrentUpdate
from zerocontact.platform.errors import DomainError
from zerocontact.platform.ids import new_id
from zerocontact.platform.kafka.consumer import TransientError
from zerocontact.platform.money import Money
from zerocontact.platform.telemetry import current_traceparent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmitApplication:
    """A party applies: the idempotency key scopes to the party."""

    idem_key: str
    party_id: str
    product_id: str
    amount: Money
    term_months: int
    purpose: str
    device_id: str
    source_address: str


async def submit_application(
    cmd: SubmitApplication, *, deps: LoanDeps, now: datetime | None = None
) -> Application:
    """Validate, store AWAITING_RISK with LoanApplicationSubmitted; the same key returns it."""
    moment = now or datetime.now(UTC)
    request = domain.fingerprint(
        cmd.party_id, cmd.product_id, cmd.amount, cmd.term_months, cmd.purpose, cmd.device_id
    )
    key = f"{cmd.party_id}:{cmd.idem_key}"
    # Insert first, read only on a duplicate key: a new application costs no extra look-up.
    product = deps.product(cmd.product_id)
    party = await deps.repo.party_facts(cmd.party_id, now=moment, alert_window=deps.alert_window)
    existing = None
    try:
        domain.validate_application(product, party, amount=cmd.amount, term_months=cmd.term_months)
    except PartyNotVerified:
        existing = await deps.repo.application_by_key(key)  # a retry may find its first answer
        if existing is None:
            # Identity's events may still be on their way (registered or verified a moment
            # ago): wait for them, bounded, instead of refusing what a retry would accept.
            waited = await deps.party_waits.until(
                cmd.party_id,
                lambda: deps.repo.party_facts(
                    cmd.party_id, now=moment, alert_window=deps.alert_window
                ),
                lambda facts: (
                    facts is not None and facts.kyc_level.rank >= product.min_kyc_level.rank
                ),
            )
            if waited.value is None:
                raise not_yet_known(deps, cmd.party_id) from None
            try:
                domain.validate_application(
                    product, waited.value, amount=cmd.amount, term_months=cmd.term_months
                )
            except PartyNotVerified as exc:
                # The partner must act (verify the customer); if it just did, a retry after
                # this long finds identity's event applied.
                exc.context["retry_after_s"] = deps.party_waits.within_s
                raise
    except DomainError:
        existing = await deps.repo.application_by_key(key)  # a retry may find its first answer
        if existing is None:
            raise
    if existing is None:
        app = Application(
            id=new_id(),
            party_id=cmd.party_id,
            product_id=cmd.product_id,
            amount=cmd.amount,
            term_months=cmd.term_months,
            purpose=cmd.purpose,
            device_id=cmd.device_id,
            source_address=cmd.source_address,
            submitted_at=moment,
        )
        event = events.application_submitted(app, topic=deps.topic)
        await deps.repo.note_application(cmd.party_id, app.id)
        pending = await deps.repo.add_application(
            app, idem_key=key, request=request, events=[event], traceparent=current_traceparent()
        )
        if pending is not None:
            deps.relay.nudge(APPLICATIONS, app.id, pending)
            return app
        existing = await deps.repo.application_by_key(key)
        assert existing is not None
    app, first = existing
    if first != request:
        raise IdempotencyConflict(f"key {cmd.idem_key} was used for a different application")
    return app


async def decide_application(
    *,
    application_id: str,
    party_id: str,
    assessment: Assessment,
    deps: LoanDeps,
    now: datetime | None = None,
) -> bool:
    """Decide an AWAITING_RISK application with its assessment; exactly once (version guard)."""
    for _ in range(MAX_ATTEMPTS):
        app = await deps.repo.application(application_id)
        if app is None or app.party_id != party_id:
            log.warning(
                "risk assessment for an application this service does not have",
                extra={"application_id": application_id},
            )
            return False
        if app.state is not domain.ApplicationState.AWAITING_RISK:
            return False  # decided before: a redelivered or second assessment changes nothing
        moment = now or datetime.now(UTC)
        product = deps.product(app.product_id)
        # One read of the party for its facts and the applications its exposure sums.
        party, listed = await deps.repo.party_facts_and_applications(
            party_id, now=moment, alert_window=deps.alert_window
        )
        if party is None:  # identity forgot the party? decide on what is known: unverified
            party = PartyFacts(party_id, KycLevel.NONE, None)
        exposure = await deps.repo.exposure(
            party_id, product.currency, now=moment, deciding=app.id, listed=listed
        )
        decision = decide(
            product,
            amount=app.amount,
            party=party,
            exposure=exposure,
            assessment=assessment,
            now=moment,
        )
        domain.record_decision(
            app,
            decision,
            assessment_id=assessment.assessment_id,
            assessment_event_id=assessment.event_id,
            now=moment,
        )
        event = events.decided(app, decision, now=moment, topic=deps.topic)
        try:
            pending = await deps.repo.save_application(app, events=[event])
        except ConcurrentUpdate:
            continue
        deps.relay.nudge(APPLICATIONS, app.id, pending)
        metrics.decided(app)
        return True
    # The consumer retries a transient failure with the same record (never dead-letters it).
    raise TransientError(f"application {application_id} kept changing")
