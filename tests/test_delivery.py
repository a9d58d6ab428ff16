"""Delivery steps against real Redis and the sandbox, driven step by step.

No dramatiq here: each test runs the Step that submit/poll return, advancing the
sandbox clock and the delivery clock by the step's delay instead of sleeping. The
worker tests in tests/workers/ run the same code under real dramatiq workers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from faxd.config import Settings
from faxd.delivery import Delivery, Step, next_poll_delay_s, retry_delay_s
from faxd.demo import text_pdf
from faxd.intake import cancel, submit
from faxd.jobs import FaxJob, JobState, JobStore
from faxd.queue import SUBMIT_ACTOR, make_broker
from faxd.sandbox import DEMO_FAXLINE_ID, DEMO_TOKEN, DEMO_TOKEN_ID, Sandbox
from faxd.sipgate import SipgateClient


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Rig:
    """A sandbox with a frozen clock, a store, and a Delivery sharing one fake time."""

    def __init__(self, redis_url: str, **env: str) -> None:
        self.sandbox = Sandbox(pending_s=1.0, per_page_s=2.0, time_scale=0, hang_s=1.0)
        self.sandbox.start()
        base = {
            "REDIS_URL": redis_url,
            "SIPGATE_BASE_URL": self.sandbox.base_url,
            "SIPGATE_TOKEN_ID": DEMO_TOKEN_ID,
            "SIPGATE_TOKEN": DEMO_TOKEN,
            "SIPGATE_FAXLINE_ID": DEMO_FAXLINE_ID,
            "FAXD_POLL_INITIAL": "1",
            "FAXD_POLL_MAX": "8",
            "FAXD_PER_PAGE_ESTIMATE": "2",
            "FAXD_RETRY_MAX": "10",
            "FAXD_RESEND_DELAY": "5",
            "FAXD_POLL_DEADLINE": "120",
            "FAXD_HTTP_TIMEOUT": "0.5",
        }
        base.update(env)
        self.settings = Settings.from_env(base)
        self.store = JobStore.from_settings(self.settings)
        self.broker = make_broker(self.settings)
        self.client = SipgateClient(self.settings)
        self.clock = Clock()
        self.delivery = Delivery(
            self.settings,
            self.store,
            self.client,
            rng=random.Random(7),
            clock=self.clock,
        )

    def close(self) -> None:
        self.client.close()
        self.broker.close()
        self.store.close()
        self.sandbox.stop()

    def new_job(self, to: str = "+49301234567", pages: int = 1) -> FaxJob:
        job = submit(
            text_pdf(f"job to {to}", str(random.random()), pages=pages),
            to,
            settings=self.settings,
            store=self.store,
            broker=self.broker,
        )
        assert job.state == JobState.ACCEPTED, job.error_message
        return job

    def drive(self, step: Step | None, limit: int = 60) -> list[Step]:
        """Run steps until none is left, moving both clocks by each delay."""
        taken: list[Step] = []
        while step is not None:
            taken.append(step)
            assert len(taken) <= limit, f"no end after {limit} steps: {taken[-3:]}"
            self.clock.now += step.delay_s
            self.sandbox.advance(step.delay_s)
            if step.actor == SUBMIT_ACTOR:
                step = self.delivery.submit(*step.args)
            else:
                step = self.delivery.poll(*step.args)
        return taken

    def run_job(self, job: FaxJob) -> tuple[FaxJob, list[Step]]:
        steps = self.drive(Step(SUBMIT_ACTOR, 0, (job.id,)))
        return self.store.get(job.id), steps

    def posts(self, job: FaxJob) -> list[dict[str, Any]]:
        return [
            f for f in self.sandbox.faxes() if f["filename"] == f"faxd-{job.id}.pdf"
        ]


@pytest.fixture
def rig(redis_url: str) -> Iterator[Rig]:
    r = Rig(redis_url)
    yield r
    r.close()


def test_poll_delays_are_bounded_and_start_at_the_estimate() -> None:
    """First poll ~ (pages + 1/4) x estimate, uncapped; later ~10 % of elapsed."""
    s = Settings.from_env(
        {"FAXD_POLL_INITIAL": "1", "FAXD_POLL_MAX": "8", "FAXD_PER_PAGE_ESTIMATE": "2"}
    )
    rng = random.Random(0)
    assert 6.175 <= next_poll_delay_s(0, 3, s, rng) <= 6.825  # (3 + 1/4) pages x 2 s
    assert 38.475 <= next_poll_delay_s(0, 20, s, rng) <= 42.525  # not capped at 8
    assert next_poll_delay_s(1, 3, s, rng, elapsed_s=6) == 1  # the floor
    assert 2.7 <= next_poll_delay_s(2, 3, s, rng, elapsed_s=30) <= 3.3
    assert next_poll_delay_s(9, 3, s, rng, elapsed_s=600) == 8  # the cap


def test_retry_delay_honours_retry_after_and_cap() -> None:
    """Backoff doubles, honours Retry-After, and never exceeds FAXD_RETRY_MAX."""
    s = Settings.from_env({"FAXD_RETRY_MAX": "10"})
    rng = random.Random(0)
    assert 0.9 <= retry_delay_s(1, s, rng) <= 1.1
    assert 3.6 <= retry_delay_s(3, s, rng) <= 4.4
    assert retry_delay_s(2, s, rng, retry_after_s=7) == 7
    assert retry_delay_s(20, s, rng) == 10
    assert retry_delay_s(1, s, rng, retry_after_s=99) == 10


def test_happy_path_sends_once_and_polls_few_times(rig: Rig) -> None:
    """A 3-page fax: one POST, sent, at most 4 GETs, a full event history."""
    job = rig.new_job(pages=3)
    done, _ = rig.run_job(job)
    assert done.state == JobState.SENT
    assert done.provider_status == "SENT"
    assert len(rig.posts(job)) == 1
    assert rig.sandbox.stats().get("GET /history/{id}", 0) <= 4
    events = [e["event"] for e in rig.store.events(job.id)]
    assert events[:3] == ["created", "submitting", "fax_submitted"]
    assert events[-1] == "fax_sent"
    assert rig.store.pdf(job.id) is None


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "sipgate_bad_request"),
        (401, "sipgate_auth"),
        (402, "sipgate_payment"),
        (403, "sipgate_forbidden"),
        (407, "sipgate_number_rejected"),
    ],
)
def test_permanent_errors_fail_the_job(rig: Rig, status: int, code: str) -> None:
    """A permanent API answer ends the job failed with its code, nothing re-posted."""
    rig.sandbox.inject(path="/sessions/fax", status=status)
    job = rig.new_job()
    done, _ = rig.run_job(job)
    assert done.state == JobState.FAILED
    assert done.error_code == code
    assert rig.sandbox.stats().get("POST /sessions/fax") == 1
    assert rig.store.pdf(job.id) is not None  # kept for `faxd retry`


def test_429_is_not_sent_and_reposted(rig: Rig) -> None:
    """429 means nothing was sent: back to accepted, re-posted, sent once."""
    rig.sandbox.inject(path="/sessions/fax", status=429, retry_after=3, times=2)
    job = rig.new_job()
    done, steps = rig.run_job(job)
    assert done.state == JobState.SENT
    assert len(rig.posts(job)) == 1
    assert steps[1].delay_s >= 3  # Retry-After honoured
    assert "post_not_delivered" in [e["event"] for e in rig.store.events(job.id)]


@pytest.mark.parametrize("how", ["reset", "500", "timeout"])
def test_accepted_but_reply_lost_is_adopted(rig: Rig, how: str) -> None:
    """sipgate created the fax but the answer was lost.

    It is found in history, not re-sent.
    """
    rig.sandbox.inject(path="/sessions/fax", accept_then=how, times=1)
    job = rig.new_job()
    done, _ = rig.run_job(job)
    assert done.state == JobState.SENT
    assert len(rig.posts(job)) == 1
    events = [e["event"] for e in rig.store.events(job.id)]
    assert "post_outcome_unknown" in events and "fax_adopted" in events


def test_unknown_outcome_with_nothing_sent_reposts_after_grace(rig: Rig) -> None:
    """A 503 that created nothing: history is empty, so after the grace it re-posts."""
    rig.sandbox.inject(path="/sessions/fax", status=503, times=1)
    job = rig.new_job()
    done, steps = rig.run_job(job)
    assert done.state == JobState.SENT
    assert len(rig.posts(job)) == 1
    events = [e["event"] for e in rig.store.events(job.id)]
    assert "repost_after_unknown" in events
    waited = sum(s.delay_s for s in steps[: steps.index(steps[-1])])
    assert waited >= rig.settings.retry_max_s


def test_crash_after_post_before_record_is_adopted(rig: Rig) -> None:
    """A worker that died right after POSTing left 'submitting': the fax is adopted."""
    job = rig.new_job()
    rig.store.transition(
        job.id, JobState.SUBMITTING, event="submitting", attempts=1,
        attempt_at=rig.clock.now,
    )  # fmt: skip
    pdf = rig.store.pdf(job.id)
    assert pdf is not None
    rig.client.send_fax(job.recipient, pdf, f"faxd-{job.id}.pdf")  # then "died"
    done, _ = rig.run_job(job)
    assert done.state == JobState.SENT
    assert len(rig.posts(job)) == 1


def test_adoption_skips_faxes_other_jobs_own(rig: Rig) -> None:
    """Another job's fax to the same number is never adopted; this one is re-posted."""
    other = rig.new_job()
    rig.run_job(other)
    job = rig.new_job()
    rig.store.transition(
        job.id, JobState.SUBMITTING, event="submitting", attempts=1,
        attempt_at=rig.clock.now,
    )  # fmt: skip
    done, _ = rig.run_job(job)
    assert done.state == JobState.SENT
    assert done.session_id != rig.store.get(other.id).session_id
    assert len(rig.posts(job)) == 1


def test_failed_transmission_is_resent_then_sent(rig: Rig) -> None:
    """FAILED once: a second transmission is posted and the job ends sent."""
    rig.sandbox.inject(path="/sessions/fax", fail_transmissions=1)
    job = rig.new_job()
    done, _ = rig.run_job(job)
    assert done.state == JobState.SENT
    assert [t.status for t in done.transmissions] == ["FAILED", "SENT"]
    assert len(rig.posts(job)) == 2


def test_failed_until_limit_ends_failed(rig: Rig) -> None:
    """Always FAILED: exactly FAXD_MAX_TRANSMISSIONS posts, then failed (fax_failed)."""
    rig.sandbox.inject(path="/sessions/fax", outcome="FAILED")
    job = rig.new_job()
    done, _ = rig.run_job(job)
    assert done.state == JobState.FAILED
    assert done.error_code == "fax_failed"
    assert len(rig.posts(job)) == rig.settings.max_transmissions == 3
    assert len(done.transmissions) == 3


def test_new_entry_404_is_retried(rig: Rig) -> None:
    """A history entry that 404s for a while after creation is polled again."""
    rig.sandbox.inject(path="/sessions/fax", visible_after_s=6)
    job = rig.new_job()
    done, _ = rig.run_job(job)
    assert done.state == JobState.SENT
    assert "poll_not_found_yet" in [e["event"] for e in rig.store.events(job.id)]


def test_vanished_entry_ends_provider_lost(rig: Rig) -> None:
    """An entry that stays gone past the grace ends failed with provider_lost."""
    rig.sandbox.inject(path="/sessions/fax", vanish_after_s=0.5)
    job = rig.new_job(pages=5)
    done, _ = rig.run_job(job)
    assert done.state == JobState.FAILED
    assert done.error_code == "provider_lost"
    assert len(rig.posts(job)) == 1


def test_poll_deadline(rig: Rig) -> None:
    """A fax that never becomes final ends failed with poll_deadline."""
    rig.sandbox.inject(path="/sessions/fax", scheduled_s=10_000)
    job = rig.new_job()
    done, _ = rig.run_job(job)
    assert done.state == JobState.FAILED
    assert done.error_code == "poll_deadline"
    assert done.provider_status == "SCHEDULED"


def test_cancelled_job_is_never_posted(rig: Rig) -> None:
    """A job cancelled before its submit step runs sends nothing."""
    job = rig.new_job()
    cancel(job.id, store=rig.store)
    done, _ = rig.run_job(job)
    assert done.state == JobState.CANCELLED
    assert rig.sandbox.faxes() == []


def test_duplicate_and_stale_messages_do_nothing(rig: Rig) -> None:
    """Re-running submit or an old poll after the job moved on changes nothing."""
    job = rig.new_job()
    first = rig.delivery.submit(job.id)
    assert first is not None
    assert rig.delivery.submit(job.id) is None  # duplicate submit: no POST, no poll
    rig.drive(first)
    assert rig.delivery.poll(job.id, 1) is None  # stale poll
    assert len(rig.posts(job)) == 1
    assert rig.store.get(job.id).state == JobState.SENT


def test_busy_recipient_defers(rig: Rig) -> None:
    """A second job to a number waits instead of posting.

    It waits while the first job to that number is unresolved.
    """
    first = rig.new_job()
    rig.store.transition(
        first.id, JobState.SUBMITTING, event="submitting", attempt_at=rig.clock.now
    )
    second = rig.new_job()
    step = rig.delivery.submit(second.id)
    assert step is not None and step.actor == SUBMIT_ACTOR
    assert rig.store.get(second.id).state == JobState.ACCEPTED
    assert rig.sandbox.faxes() == []


def test_poll_redelivered_after_lost_follow_up_reissues_it(rig: Rig) -> None:
    """A poll one step behind re-issues the follow-up only once it is overdue."""
    from faxd.delivery import lost_after_s

    job = rig.new_job(pages=2)
    step = rig.delivery.submit(job.id)
    assert step is not None
    rig.clock.now += step.delay_s
    rig.sandbox.advance(step.delay_s)
    follow = rig.delivery.poll(*step.args)  # the job's seq moved on...
    assert follow is not None  # ...and this follow-up is "lost" in a crash
    assert rig.delivery.poll(*step.args) is None  # early: a mere duplicate
    rig.clock.now += follow.delay_s + lost_after_s(rig.settings) + 1
    again = rig.delivery.poll(*step.args)  # the redelivered original, long after
    assert again is not None and again.args == follow.args
    rig.drive(again)
    assert rig.store.get(job.id).state == JobState.SENT
    assert rig.delivery.poll(*step.args) is None  # the final job ignores it


def test_submit_redelivered_after_lost_first_poll_reissues_it(rig: Rig) -> None:
    """A submit redelivered long after the job was submitted re-issues the poll."""
    from faxd.delivery import lost_after_s

    job = rig.new_job()
    step = rig.delivery.submit(job.id)  # its poll "lost"
    assert step is not None
    assert rig.delivery.submit(job.id) is None  # early: a duplicate, no new chain
    rig.clock.now += step.delay_s + lost_after_s(rig.settings) + 1
    again = rig.delivery.submit(job.id)
    assert again is not None and again.args == step.args
    rig.drive(again)
    assert rig.store.get(job.id).state == JobState.SENT
    assert len(rig.posts(job)) == 1


def test_duplicate_poll_chains_do_not_multiply(rig: Rig) -> None:
    """Two copies of one poll message: one chain survives, GETs stay few."""
    job = rig.new_job(pages=3)
    step = rig.delivery.submit(job.id)
    assert step is not None
    rig.clock.now += step.delay_s
    rig.sandbox.advance(step.delay_s)
    follow = rig.delivery.poll(*step.args)  # the original: one GET, one follow-up
    assert rig.delivery.poll(*step.args) is None  # the copy: no GET, no chain
    assert rig.sandbox.stats().get("GET /history/{id}", 0) == 1
    rig.drive(follow)
    assert rig.store.get(job.id).state == JobState.SENT


def test_stale_failed_poll_cannot_undo_a_retransmission(rig: Rig) -> None:
    """A duplicate poll of a FAILED first transmission cannot erase the second one."""
    rig.sandbox.inject(path="/sessions/fax", fail_transmissions=1)
    job = rig.new_job()
    first = rig.delivery.submit(job.id)
    assert first is not None
    rig.clock.now += 10
    rig.sandbox.advance(10)
    resend = rig.delivery.poll(*first.args)  # FAILED: back to accepted
    assert resend is not None
    rig.clock.now += resend.delay_s
    second = rig.delivery.submit(*resend.args)  # transmission 2 posted
    assert second is not None
    assert rig.delivery.poll(*first.args) is None  # the stale duplicate of poll 1
    current = rig.store.get(job.id)
    assert current.state == JobState.SUBMITTED and len(current.transmissions) == 2
    rig.drive(second)
    assert rig.store.get(job.id).state == JobState.SENT
    assert len(rig.posts(job)) == 2


def test_long_fax_gets_its_time_before_the_deadline(redis_url: str) -> None:
    """A fax longer than the poll deadline is not failed while it is still sending."""
    r = Rig(redis_url, FAXD_POLL_DEADLINE="10")
    try:
        job = r.new_job(pages=8)  # about 17 s at 2 s per page, deadline 10 s
        done, _ = r.run_job(job)
        assert done.state == JobState.SENT
    finally:
        r.close()


def test_history_refused_after_unknown_post_is_outcome_unknown(rig: Rig) -> None:
    """A lost answer plus a refused history lookup ends outcome_unknown, not failed."""
    rig.sandbox.inject(path="/sessions/fax", accept_then="reset", times=1)
    rig.sandbox.inject(method="GET", path="/history", status=403)
    job = rig.new_job()
    done, _ = rig.run_job(job)
    assert done.state == JobState.FAILED
    assert done.error_code == "outcome_unknown"
    assert "may have been sent" in done.error_message
    assert len(rig.posts(job)) == 1


def test_orphaned_jobs_are_resumed(rig: Rig) -> None:
    """A live job quiet past the stale limit gets its step re-issued; fresh ones not."""
    from faxd.delivery import lost_after_s, orphaned_steps

    lost = rig.new_job()  # its submit message "lost"
    polled = rig.new_job(to="+49301234568")
    poll = rig.delivery.submit(polled.id)
    assert poll is not None  # its poll message "lost"
    later = poll.delay_s + rig.clock.now + lost_after_s(rig.settings) + 1
    assert orphaned_steps(rig.store, rig.settings, rig.clock.now) == []
    steps = orphaned_steps(rig.store, rig.settings, later)
    assert sorted((s.actor, s.args) for s in steps) == sorted(
        [(SUBMIT_ACTOR, (lost.id,)), ("poll_fax", poll.args)]
    )
    assert rig.store.events(lost.id)[-1]["event"] == "resumed"
    for step in steps:
        rig.drive(step)
    assert rig.store.get(lost.id).state == JobState.SENT
    assert rig.store.get(polled.id).state == JobState.SENT
    assert len(rig.posts(lost)) == len(rig.posts(polled)) == 1


def test_repeat_submit_requeues_an_accepted_job(rig: Rig) -> None:
    """A repeat with the same idempotency key re-enqueues a job still accepted."""
    pdf = text_pdf("repeat")
    first = submit(pdf, "+49301234567", settings=rig.settings, store=rig.store,
                   broker=rig.broker, idempotency_key="k")  # fmt: skip
    depth = rig.store.r.hlen("faxd-dramatiq:faxd.msgs")
    again = submit(pdf, "+49301234567", settings=rig.settings, store=rig.store,
                   broker=rig.broker, idempotency_key="k")  # fmt: skip
    assert again.id == first.id
    assert rig.store.r.hlen("faxd-dramatiq:faxd.msgs") == depth + 1
