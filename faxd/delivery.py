"""Delivery decisions: what one submit or poll step does, and what comes next.

The dramatiq actors in ``workers/`` are thin: each calls :meth:`Delivery.submit` or
:meth:`Delivery.poll` once and enqueues the :class:`Step` it returns (a delayed
message, never a sleeping thread). Everything here is idempotent: a step that finds
the job already moved on does nothing, so redelivered or duplicated messages are
harmless.

Exactly-once rests on three rules (SIPGATE_API.md 2.3):

1. ``submitting`` (attempt number and time) is stored before every POST.
2. A job found in ``submitting`` had a POST whose outcome is unknown. It is looked
   up in sipgate's history (outgoing faxes of the line to the recipient since the
   attempt, skipping ids other jobs own) and adopted if found; only after
   ``retry_max_s`` of finding nothing is it posted again.
3. At most one unresolved POST per recipient: a job does not post while another
   job to the same number is ``submitting`` (the actors also hold a per-recipient
   dramatiq concurrency limiter around the step), so a history match is exact.

Every write that schedules a follow-up message also stores when it is due
(``next_due_at``). A message whose job is overdue by more than ``lost_after_s``
(a dead worker's redelivery time plus a margin) was lost: the sweep
(:func:`orphaned_steps`) and stale messages re-issue it then, and only then, so
duplicate messages die out instead of multiplying into parallel chains.

The PDF stays in Redis until the job is final so a FAILED transmission can be sent
again with a fresh POST (sipgate's resend call gives no id to follow); it is
dropped when the job is sent and kept for the retention time when it failed, so
``faxd retry`` can resend it.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from faxd.config import Settings
from faxd.errors import (
    SipgateError,
    SipgateNotFound,
    SipgateRejected,
    SipgateTransient,
)
from faxd.jobs import FaxJob, JobState, JobStore, Transmission
from faxd.metrics import DeliveryMetrics
from faxd.numbers import mask
from faxd.queue import POLL_ACTOR, SUBMIT_ACTOR
from faxd.sipgate import HistoryEntry, SipgateClient

__all__ = [
    "Delivery",
    "Step",
    "is_overdue",
    "lost_after_s",
    "next_poll_delay_s",
    "orphaned_steps",
    "retry_delay_s",
]

log = structlog.get_logger("faxd.delivery")

#: sipgate's history may lag behind a POST; look this far back for a lost send.
HISTORY_LOOKBACK_S = 300.0
#: The first retry after a transient error waits about this long, then doubles.
RETRY_BASE_S = 1.0
#: The first poll allows this many pages' time beyond the document's own pages.
FIRST_POLL_EXTRA_PAGES = 0.25
#: After the first poll, wait this share of the time since submission.
POLL_PROPORTION = 0.1
#: Jitter spreads polls and retries of many jobs so they do not arrive together.
JITTER = 0.1


@dataclass(frozen=True, slots=True)
class Step:
    """The next message to send: an actor name, a delay, and its arguments."""

    actor: str
    delay_s: float
    args: tuple[Any, ...]


def next_poll_delay_s(
    poll_no: int,
    pages: int,
    settings: Settings,
    rng: random.Random,
    elapsed_s: float = 0.0,
) -> float:
    """Delay before poll number ``poll_no`` (0 is the first after submission).

    The first poll comes when the fax can plausibly be done: the per-page estimate
    for each page plus a quarter page for queueing and dialling. It is a one-off
    wait, so ``poll_max_s`` does not cap it (a 20-page fax should not be polled
    every minute for its first twenty). Later polls wait a tenth of the time since
    submission: the longer a fax has taken, the less a few more seconds matter, so
    the lag between sipgate finishing and us noticing stays near 10 % of the
    transmission time (plus the floor) while a long fax costs only a few GETs.
    Delays get +-10 % jitter (the first +-5 %) and stay within [poll_initial_s,
    poll_max_s] (the first only above the floor).
    """
    if poll_no <= 0:
        base = first_poll_estimate_s(pages, settings)
        # Half the jitter: overshooting the estimate is pure lag.
        delay = base * rng.uniform(1 - JITTER / 2, 1 + JITTER / 2)
        return max(settings.poll_initial_s, delay)
    delay = POLL_PROPORTION * elapsed_s * rng.uniform(1 - JITTER, 1 + JITTER)
    return min(settings.poll_max_s, max(settings.poll_initial_s, delay))


def retry_delay_s(
    attempt: int,
    settings: Settings,
    rng: random.Random,
    retry_after_s: float | None = None,
) -> float:
    """Exponential backoff with jitter for attempt ``attempt`` (1-based).

    Honours a ``Retry-After`` hint, and never waits longer than ``retry_max_s``.
    """
    exponent = min(max(0, attempt - 1), 30)  # past 2**30 s the cap rules anyway
    base: float = RETRY_BASE_S * 2**exponent  # int ** int types as Any
    delay = base * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return min(settings.retry_max_s, delay)


def lost_after_s(settings: Settings) -> float:
    """How far past its due time a follow-up message counts as lost.

    A due message runs within moments, or, if its worker died holding it, after
    dramatiq's redelivery (``redeliver_after_s``); beyond that plus a margin,
    nothing is coming.
    """
    return settings.redeliver_after_s + 30.0


def is_overdue(job: FaxJob, settings: Settings, now: float) -> bool:
    """True when the job's next message should have run long ago: it was lost."""
    due = job.next_due_at if job.next_due_at is not None else job.updated_at
    return now > due + lost_after_s(settings)


def first_poll_estimate_s(pages: int, settings: Settings) -> float:
    """When a fax of ``pages`` pages can plausibly be done (without jitter)."""
    return (max(1, pages) + FIRST_POLL_EXTRA_PAGES) * settings.per_page_estimate_s


def _resume(seen: FaxJob, now: float) -> Callable[[FaxJob], FaxJob | None]:
    def change(job: FaxJob) -> FaxJob | None:
        same = job.state == seen.state and job.updated_at == seen.updated_at
        return dataclasses.replace(job, next_due_at=now) if same else None

    return change


def orphaned_steps(
    store: JobStore, settings: Settings, now: float, *, limit: int = 1000
) -> list[Step]:
    """Re-issue the step of each live job whose next message is long overdue.

    Each re-issue is recorded as a ``resumed`` event and makes the job due now,
    so the same job is not resumed again before ``lost_after_s`` has passed.
    """
    cutoff = now - lost_after_s(settings)  # overdue jobs last changed before this
    steps: list[Step] = []
    for state in (JobState.ACCEPTED, JobState.SUBMITTING, JobState.SUBMITTED):
        for job in store.list(state, limit=limit, before=cutoff):
            if not is_overdue(job, settings, now):
                continue
            resumed = store.update(
                job.id,
                _resume(job, now),
                event="resumed",
                detail={"overdue_s": round(now - (job.next_due_at or 0.0), 1)},
            )
            if resumed is None:
                continue  # it moved meanwhile: alive after all
            log.warning("job_resumed", job_id=job.id, state=str(job.state))
            if job.state == JobState.SUBMITTED:
                steps.append(Step(POLL_ACTOR, 0.0, (job.id, resumed.poll_seq)))
            else:
                steps.append(Step(SUBMIT_ACTOR, 0.0, (job.id,)))
    return steps


class Delivery:
    """Runs submit and poll steps against one job store and one sipgate client."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        client: SipgateClient,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        metrics: DeliveryMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.rng = rng or random.Random()
        self.clock = clock
        # Unregistered collectors when none are given: observing stays unconditional.
        self.metrics = metrics or DeliveryMetrics()

    # -- submit --------------------------------------------------------------

    def submit(self, job_id: str) -> Step | None:
        """Post the job's PDF to sipgate, or resolve an earlier unknown POST."""
        job = self.store.find(job_id)
        if job is None:
            log.warning("submit_job_missing", job_id=job_id)
            return None
        if job.state == JobState.ACCEPTED:
            return self._first_post(job)
        if job.state == JobState.SUBMITTING:
            return self._resolve_unknown(job)
        if job.state == JobState.SUBMITTED and self._overdue(job):
            # A redelivered submit whose worker died before enqueueing the first
            # poll, long enough ago that the poll would have run: issue it again.
            return Step(POLL_ACTOR, 0.0, (job.id, job.poll_seq))
        log.info("submit_skipped", job_id=job_id, state=str(job.state))
        return None

    def _overdue(self, job: FaxJob) -> bool:
        return is_overdue(job, self.settings, self.clock())

    def _schedule(self, job: FaxJob, step: Step, event: str, **detail: Any) -> Step:
        """Record when ``step`` is due (no state change) and return it."""
        due = self.clock() + step.delay_s
        self.store.update(
            job.id,
            lambda j: (
                dataclasses.replace(j, next_due_at=due)
                if j.state == job.state and j.attempts == job.attempts
                else None
            ),
            event=event,
            detail=detail,
        )
        return step

    def _first_post(self, job: FaxJob) -> Step | None:
        pdf = self._pdf_or_fail(job)
        if pdf is None:
            return None
        busy = self._other_unresolved(job)
        if busy is not None:
            log.info("submit_deferred_recipient_busy", job_id=job.id, other=busy)
            return self._schedule(
                job,
                Step(SUBMIT_ACTOR, self.settings.poll_initial_s, (job.id,)),
                "deferred_recipient_busy",
                other=busy,
            )
        now = self.clock()
        moved = self.store.transition(
            job.id,
            JobState.SUBMITTING,
            event="submitting",
            expect={JobState.ACCEPTED},
            detail={"attempt": job.attempts + 1},
            attempts=job.attempts + 1,
            attempt_at=now,
            post_unknown_since=None,
            error_code="",
            error_message="",
        )
        if moved is None:
            return None  # another worker moved first (cancel, duplicate message)
        return self._post(moved, pdf)

    def _pdf_or_fail(self, job: FaxJob) -> bytes | None:
        """The job's PDF; without it (expired, lost) the job fails document_gone."""
        pdf = self.store.pdf(job.id)
        if pdf is None:
            self._fail(
                job,
                "document_gone",
                "The document is no longer stored (expired or lost); submit it again.",
                expect={job.state},
            )
        return pdf

    def _post(self, job: FaxJob, pdf: bytes) -> Step | None:
        log.info(
            "fax_posting",
            job_id=job.id,
            attempt=job.attempts,
            recipient=mask(job.recipient),
            pages=job.pages,
        )
        try:
            with self.metrics.sipgate_call("send_fax"):
                session_id = self.client.send_fax(
                    job.recipient, pdf, f"faxd-{job.id}.pdf"
                )
        except SipgateRejected as exc:
            self.metrics.submission("rejected")
            log.warning("fax_post_rejected", job_id=job.id, status=exc.status)
            self._fail(job, exc.code, exc.message, expect={JobState.SUBMITTING})
            return None
        except SipgateTransient as exc:
            return self._post_transient(job, exc)
        except SipgateError as exc:  # a malformed answer: the fax may exist
            return self._post_transient(
                job, SipgateTransient(exc.message, status=exc.status, maybe_sent=True)
            )
        self.metrics.submission("accepted")
        return self._accepted_by_sipgate(job, session_id, event="fax_submitted")

    def _post_transient(self, job: FaxJob, exc: SipgateTransient) -> Step:
        delay = retry_delay_s(job.attempts, self.settings, self.rng, exc.retry_after_s)
        self.metrics.submission("unknown" if exc.maybe_sent else "retry")
        if not exc.maybe_sent:
            # Provably nothing reached sipgate: back to accepted, re-post is safe.
            self.store.transition(
                job.id,
                JobState.ACCEPTED,
                event="post_not_delivered",
                expect={JobState.SUBMITTING},
                detail={"status": exc.status, "retry_in_s": round(delay, 3)},
                error_code=exc.code,
                error_message=exc.message,
                next_due_at=self.clock() + delay,
            )
            log.warning(
                "fax_post_retry", job_id=job.id, status=exc.status, delay_s=delay
            )
            return Step(SUBMIT_ACTOR, delay, (job.id,))
        self.store.update(
            job.id,
            lambda j: (
                dataclasses.replace(
                    j,
                    post_unknown_since=j.post_unknown_since or j.attempt_at,
                    error_code=exc.code,
                    error_message=exc.message,
                    next_due_at=self.clock() + delay,
                )
                if j.state == JobState.SUBMITTING and not j.session_id
                else None
            ),
            event="post_outcome_unknown",
            detail={"status": exc.status},
        )
        log.warning(
            "fax_post_outcome_unknown", job_id=job.id, status=exc.status, delay_s=delay
        )
        return Step(SUBMIT_ACTOR, delay, (job.id,))

    def _resolve_unknown(self, job: FaxJob) -> Step | None:
        """A POST of this job may have reached sipgate: look before posting again."""
        attempt_at = job.attempt_at or job.updated_at
        # From the first POST whose outcome is unknown: a re-post's own attempt
        # time would miss a fax the first one made.
        first_unknown = job.post_unknown_since or attempt_at
        try:
            with self.metrics.sipgate_call("find_faxes"):
                entries = self.client.find_faxes(
                    since=_utc(first_unknown - HISTORY_LOOKBACK_S),
                    target=job.recipient,
                )
        except SipgateTransient as exc:
            delay = retry_delay_s(
                job.attempts, self.settings, self.rng, exc.retry_after_s
            )
            log.warning("reconcile_retry", job_id=job.id, delay_s=delay)
            return self._schedule(
                job, Step(SUBMIT_ACTOR, delay, (job.id,)), "reconcile_retry"
            )
        except SipgateError as exc:
            # The fax may exist, and we cannot look: say so instead of "failed".
            self._fail(
                job,
                "outcome_unknown",
                f"The fax may have been sent: an earlier request's answer was lost "
                f"and sipgate refused the history lookup ({exc.code}). Check the "
                "sipgate web app before sending it again.",
                expect={JobState.SUBMITTING},
            )
            return None
        mine = {t.session_id for t in job.transmissions}
        candidates = sorted(
            (
                e
                for e in entries
                if e.id not in mine
                and self.store.owner_of_session(e.id) in (None, job.id)
            ),
            key=lambda e: (e.created.timestamp() if e.created else 0.0, e.id),
        )
        if candidates:
            found = candidates[0]
            if len(candidates) > 1:
                log.warning(
                    "reconcile_several_matches",
                    job_id=job.id,
                    adopted=found.id,
                    others=[c.id for c in candidates[1:]],
                )
            self.metrics.submission("adopted")
            return self._accepted_by_sipgate(
                job, found.id, event="fax_adopted", entry=found
            )
        # The grace runs from when our POST certainly ended (its timeout), not
        # from when it started: sipgate may record a slow request late.
        waited = self.clock() - (attempt_at + self.settings.http_timeout_s)
        grace = self.settings.retry_max_s
        if waited < grace:
            delay = min(
                grace - waited, retry_delay_s(job.attempts, self.settings, self.rng)
            )
            log.info("reconcile_wait", job_id=job.id, waited_s=round(waited, 3))
            return self._schedule(
                job,
                Step(SUBMIT_ACTOR, max(delay, 0.05), (job.id,)),
                "reconcile_wait",
                waited_s=round(waited, 3),
            )
        pdf = self._pdf_or_fail(job)
        if pdf is None:
            return None
        reposted = self.store.update(
            job.id,
            lambda j: (
                dataclasses.replace(j, attempts=j.attempts + 1, attempt_at=self.clock())
                if j.state == JobState.SUBMITTING and j.attempts == job.attempts
                else None
            ),
            event="repost_after_unknown",
            detail={"attempt": job.attempts + 1, "waited_s": round(waited, 3)},
        )
        if reposted is None:
            return None
        log.warning("fax_reposting", job_id=job.id, attempt=reposted.attempts)
        return self._post(reposted, pdf)

    def _accepted_by_sipgate(
        self,
        job: FaxJob,
        session_id: str,
        *,
        event: str,
        entry: HistoryEntry | None = None,
    ) -> Step | None:
        now = self.clock()
        delay = next_poll_delay_s(0, job.pages, self.settings, self.rng)
        number = len(job.transmissions) + 1
        status = (
            entry.fax_status if entry is not None and entry.fax_status else "PENDING"
        )
        moved = self.store.transition(
            job.id,
            JobState.SUBMITTED,
            event=event,
            expect={JobState.SUBMITTING},
            detail={"session_id": session_id, "transmission": number},
            session_id=session_id,
            provider_status=status,
            submitted_at=now,
            post_unknown_since=None,
            transmissions=(*job.transmissions, Transmission(number, session_id, now)),
            poll_seq=job.poll_seq + 1,
            error_code="",
            error_message="",
            next_due_at=now + delay,
        )
        if moved is None:
            return None
        log.info("fax_submitted", job_id=job.id, session_id=session_id, via=event)
        return Step(POLL_ACTOR, delay, (job.id, moved.poll_seq))

    def _other_unresolved(self, job: FaxJob) -> str | None:
        for other in self.store.list(JobState.SUBMITTING, limit=10_000):
            if other.id != job.id and other.recipient == job.recipient:
                return other.id
        return None

    # -- poll ----------------------------------------------------------------

    def poll(self, job_id: str, seq: int) -> Step | None:
        """One GET of the fax's history entry; returns the next poll or nothing."""
        job = self.store.find(job_id)
        if job is None or job.is_final:
            return None
        if job.state != JobState.SUBMITTED or job.poll_seq != seq:
            return self._after_stale_poll(job, seq)
        now = self.clock()
        since = now - (job.submitted_at or job.updated_at)
        try:
            with self.metrics.sipgate_call("get_history_entry"):
                entry = self.client.get_history_entry(job.session_id)
        except SipgateNotFound:
            self.metrics.poll("not_found")
            if since < max(self.settings.retry_max_s, 3 * self.settings.poll_max_s):
                return self._next_poll(job, "", event="poll_not_found_yet")
            self._fail(
                job,
                "provider_lost",
                f"sipgate no longer knows fax {job.session_id}; the outcome is "
                "unknown, check the sipgate web app before sending it again.",
                expect={JobState.SUBMITTED},
                poll_of=job,
            )
            return None
        except SipgateError as exc:
            self.metrics.poll("error")
            log.warning("poll_error", job_id=job.id, code=exc.code, status=exc.status)
            return self._next_poll(job, "", event="poll_error", error=exc)
        status = entry.fax_status
        if status == "SENT":
            self.metrics.poll("sent")
            sent = self._finish_transmission(
                job, JobState.SENT, status, event="fax_sent"
            )
            if sent is not None:
                self.metrics.finished("sent", job.created_at, sent.finished_at or now)
            log.info("fax_sent", job_id=job.id, polls=job.polls + 1)
            return None
        if status == "FAILED":
            return self._transmission_failed(job)
        # The deadline counts from when the fax could plausibly be done, so a
        # 150-page fax is not given up while it is still being sent.
        deadline = self.settings.poll_deadline_s + first_poll_estimate_s(
            job.pages, self.settings
        )
        if since > deadline:
            self.metrics.poll("deadline")
            self._fail(
                job,
                "poll_deadline",
                f"sipgate still reports {status or 'no status'} after "
                f"{since:.0f} s; check the fax in the sipgate web app.",
                expect={JobState.SUBMITTED},
                poll_of=job,
                provider_status=status,
            )
            return None
        if status not in {"PENDING", "SENDING", "SCHEDULED"}:
            log.warning("poll_unknown_status", job_id=job.id, status=status)
        self.metrics.poll("pending")
        return self._next_poll(job, status, event="polled")

    def _after_stale_poll(self, job: FaxJob, seq: int) -> Step | None:
        """A poll that does not match the job: a duplicate, or the last one alive.

        Each step writes the job before enqueueing its follow-up, so a worker
        killed between the two leaves a redelivered message one step behind the
        job and no follow-up at all. Only when the job is overdue (its follow-up
        should have run long ago) is that follow-up issued again; otherwise this
        is a duplicate and ends here, so duplicates never multiply.
        """
        if not self._overdue(job):
            return None
        if job.state == JobState.SUBMITTED and seq == job.poll_seq - 1:
            return Step(POLL_ACTOR, 0.0, (job.id, job.poll_seq))
        if job.state == JobState.ACCEPTED and seq == job.poll_seq:
            return Step(SUBMIT_ACTOR, 0.0, (job.id,))  # a retransmission's submit
        return None

    def _next_poll(
        self,
        job: FaxJob,
        status: str,
        *,
        event: str,
        error: SipgateError | None = None,
    ) -> Step | None:
        now = self.clock()
        elapsed = now - (job.submitted_at or job.updated_at)
        delay = next_poll_delay_s(
            job.polls + 1, job.pages, self.settings, self.rng, elapsed_s=elapsed
        )
        if isinstance(error, SipgateTransient) and error.retry_after_s:
            delay = min(self.settings.retry_max_s, max(delay, error.retry_after_s))

        def change(j: FaxJob) -> FaxJob | None:
            if not self._same_poll(j, job):
                return None
            return dataclasses.replace(
                j,
                poll_seq=j.poll_seq + 1,
                polls=j.polls + 1,
                provider_status=status or j.provider_status,
                next_due_at=now + delay,
            )

        detail: dict[str, Any] = {}
        if error is not None:
            detail = {"code": error.code, "status": error.status}
        updated = self.store.update(job.id, change, event=event, detail=detail)
        if updated is None:
            return None
        return Step(POLL_ACTOR, delay, (job.id, updated.poll_seq))

    @staticmethod
    def _same_poll(current: FaxJob, polled: FaxJob) -> bool:
        """Whether ``current`` is still the job this poll read: same fax, same turn.

        Every write a poll makes checks this, so a poll that raced another (a
        duplicate message) cannot overwrite what the other one wrote since.
        """
        return (
            current.state == JobState.SUBMITTED
            and current.session_id == polled.session_id
            and current.poll_seq == polled.poll_seq
        )

    def _transmission_failed(self, job: FaxJob) -> Step | None:
        used = len(job.transmissions)
        last = used >= self.settings.max_transmissions
        self.metrics.poll("failed" if last else "resend")
        if not last:
            moved = self._finish_transmission(
                job,
                JobState.ACCEPTED,
                "FAILED",
                event="transmission_failed",
                error_code="fax_failed",
                error_message=(
                    f"Transmission {used} failed (busy, no answer or a fax error); "
                    f"trying again in {self.settings.resend_delay_s:g} s."
                ),
                session_id="",
                next_due_at=self.clock() + self.settings.resend_delay_s,
            )
            if moved is None:
                return None
            log.warning("fax_transmission_failed", job_id=job.id, transmission=used)
            return Step(SUBMIT_ACTOR, self.settings.resend_delay_s, (job.id,))
        failed = self._finish_transmission(
            job,
            JobState.FAILED,
            "FAILED",
            event="fax_failed",
            error_code="fax_failed",
            error_message=(
                f"sipgate could not deliver the fax in {used} transmission(s) "
                "(busy, no answer or not a fax machine); check the number and retry."
            ),
        )
        if failed is not None and failed.finished_at is not None:
            self.metrics.finished("failed", job.created_at, failed.finished_at)
        log.warning("fax_failed", job_id=job.id, transmissions=used)
        return None

    def _finish_transmission(
        self, job: FaxJob, state: JobState, status: str, *, event: str, **changes: Any
    ) -> FaxJob | None:
        now = self.clock()
        if state in (JobState.SENT, JobState.FAILED):
            changes.setdefault("finished_at", now)

        def change(j: FaxJob) -> FaxJob | None:
            if not self._same_poll(j, job):
                return None
            done = tuple(
                dataclasses.replace(t, status=status, finished_at=now)
                if t.session_id == j.session_id
                else t
                for t in j.transmissions
            )
            return dataclasses.replace(
                j, state=state, provider_status=status, transmissions=done, **changes
            )

        return self.store.update(job.id, change, event=event)

    def _fail(
        self,
        job: FaxJob,
        code: str,
        message: str,
        *,
        expect: set[JobState],
        poll_of: FaxJob | None = None,
        **changes: Any,
    ) -> None:
        """End the job failed if it is in ``expect`` (and, for a poll, unchanged)."""
        now = self.clock()

        def change(j: FaxJob) -> FaxJob | None:
            if j.state not in expect:
                return None
            if poll_of is not None and not self._same_poll(j, poll_of):
                return None
            return dataclasses.replace(
                j,
                state=JobState.FAILED,
                error_code=code,
                error_message=message,
                finished_at=now,
                **changes,
            )

        failed = self.store.update(job.id, change, event="failed")
        if failed is not None:
            self.metrics.finished("failed", job.created_at, now)
        log.error("fax_job_failed", job_id=job.id, code=code)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
