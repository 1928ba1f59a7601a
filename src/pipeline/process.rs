//! Working one job: carries out the steps [`crate::decide::decide`] returns, and reports what
//! happened as the next event. Nothing here decides what a job does next; each step is one
//! function that performs it (ask the instance's capacity, hold, acquire the permit, call
//! Connect, back off, publish, give back, recycle).
//!
//! Shutdown: a job that is waiting (for capacity, a permit, a backoff or a publish retry) when
//! receiving stops is released at once (visibility 0); a call on the wire is finished, unless the
//! grace period runs out first.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{Instrument, info, warn};

use super::Context;
use super::groups::GroupPlace;
use super::permit::Permit;
use crate::connect::{ConnectApi, ConnectError, ErrorClass, Operation};
use crate::decide::{
    self, Answer, CapacityView, Event, JobState, Now, RequeueReason, Step, Verdict,
};
use crate::job::{Action, InvalidJob, Job, parse_job};
use crate::outcome::{JobResult, codes};
use crate::queue::{MessageQueue, ORIGINAL_SENT_ATTRIBUTE, OutgoingMessage, ReceivedMessage};
use crate::rate::instances::HoldTicket;

/// Works one message until it is settled or given back. Holds the in-flight slot until then.
pub async fn process<Q: MessageQueue, C: ConnectApi>(
    ctx: Arc<Context<Q, C>>,
    msg: ReceivedMessage,
    inflight_id: u64,
    place: Option<GroupPlace>,
) {
    let span = tracing::info_span!("job", message_id = %msg.message_id, job_id = tracing::field::Empty, receive_count = msg.receive_count);
    async move {
        let parsed = parse_job(&msg.body, &ctx.settings.defaults);
        if let Some(id) = parsed
            .as_ref()
            .map(|j| Some(j.job_id.as_str()))
            .unwrap_or_else(|e| e.job_id.as_deref())
        {
            tracing::Span::current().record("job_id", id);
        }
        let received = match &parsed {
            Ok(job) => Ok((operation(job), job.not_after)),
            Err(e) => Err(e.to_string()),
        };
        let state = match place {
            Some(_) => JobState::grouped(msg.receive_count),
            None => JobState::new(msg.receive_count),
        };
        let mut run = JobRun {
            ctx: &ctx,
            msg: &msg,
            inflight_id,
            parsed,
            state,
            place,
            started: tokio::time::Instant::now(),
            permit: None,
            hold: None,
            changes: None,
            response: None,
        };
        run.drive(Event::Received(received)).await;
    }
    .instrument(span)
    .await
}

fn operation(job: &Job) -> Operation {
    match job.action {
        Action::StartPersistentChat => Operation::StartChatContact,
        Action::AssociatePersistentContact => Operation::CreatePersistentContactAssociation,
    }
}

enum CallOk {
    Started(crate::connect::StartedChat),
    Associated(crate::connect::Associated),
}

/// One delivery of a job being worked.
struct JobRun<'a, Q, C> {
    ctx: &'a Context<Q, C>,
    msg: &'a ReceivedMessage,
    inflight_id: u64,
    parsed: Result<Job, InvalidJob>,
    state: JobState,
    /// Its place in its FIFO group, for a message of a FIFO jobs queue.
    place: Option<GroupPlace>,
    started: tokio::time::Instant,
    /// What the next call was granted so far (capacity lease, rate token).
    permit: Option<Permit>,
    /// Counted among the jobs held for the instance's capacity while set.
    hold: Option<HoldTicket>,
    /// The instance's capacity changes, subscribed before asking.
    changes: Option<watch::Receiver<u64>>,
    /// The successful Connect response, once there is one.
    response: Option<CallOk>,
}

impl<Q: MessageQueue, C: ConnectApi> JobRun<'_, Q, C> {
    fn job(&self) -> Option<&Job> {
        self.parsed.as_ref().ok()
    }

    /// Decides, performs the step, reports what happened, until the job is done.
    async fn drive(&mut self, first: Event) {
        let mut event = first;
        loop {
            let step = decide::decide(
                &self.ctx.decide,
                &mut self.state,
                event,
                Now::read(),
                jitter(),
            );
            event = match step {
                Step::AwaitTurn => self.await_turn().await,
                Step::AskCapacity => self.ask_capacity(),
                Step::HoldForCapacity { until } => self.hold_for_capacity(until).await,
                Step::Acquire => self.acquire().await,
                Step::ClaimCapacity => self.claim_capacity(),
                Step::Call => self.call().await,
                Step::Backoff { until } => self.backoff(until).await,
                Step::Publish(verdict) => self.publish(verdict).await,
                Step::Recycle { after } => self.recycle(after).await,
                Step::GiveBack { after, reason } => {
                    self.give_back(after, reason).await;
                    // The later jobs of its group held here follow it back.
                    return self.leave_group(false);
                }
                Step::Done => return self.leave_group(true),
            };
        }
    }

    async fn await_turn(&mut self) -> Event {
        let Some(place) = self.place.as_mut() else {
            return Event::Turn(true);
        };
        tokio::select! {
            turn = place.turn() => Event::Turn(turn),
            _ = self.ctx.stop_receiving.cancelled() => Event::Stopped,
        }
    }

    fn leave_group(&mut self, settled: bool) {
        if let Some(place) = self.place.take() {
            place.finish(settled);
        }
    }

    fn instance(&self) -> &str {
        self.job().map_or("", |j| j.instance_id.as_str())
    }

    fn ask_capacity(&mut self) -> Event {
        let book = &self.ctx.capacity;
        let instance = self.instance().to_owned();
        self.changes = Some(book.changes(&instance));
        let mut asked = book.peek(&instance);
        if let Some(promise) = asked.promise.take() {
            self.permit
                .get_or_insert_with(Permit::default)
                .promise(promise);
        }
        Event::Capacity(self.view(&asked))
    }

    fn claim_capacity(&mut self) -> Event {
        let book = &self.ctx.capacity;
        let instance = self.instance().to_owned();
        self.changes = Some(book.changes(&instance));
        let promise = self.permit.as_mut().and_then(Permit::take_promise);
        let mut asked = book.claim(&instance, promise);
        let view = self.view(&asked);
        if let Some(lease) = asked.lease.take() {
            self.hold = None;
            self.permit.get_or_insert_with(Permit::default).lease(lease);
        } else {
            // The rate token goes unused; the permit reports neutral.
            self.permit = None;
        }
        Event::Claimed(view)
    }

    fn view(&self, asked: &crate::rate::instances::Asked) -> CapacityView {
        CapacityView {
            admit: asked.admit,
            ahead: asked
                .holding
                .saturating_sub(usize::from(self.hold.is_some())),
            start_rate: asked.start_rate,
        }
    }

    async fn hold_for_capacity(&mut self, until: tokio::time::Instant) -> Event {
        if self.hold.is_none() {
            let instance = self.instance().to_owned();
            self.hold = Some(self.ctx.capacity.hold(&instance));
        }
        let changed = async {
            match self.changes.as_mut() {
                Some(rx) => {
                    let _ = rx.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(until) => Event::Woke,
            _ = changed => Event::Woke,
            _ = self.ctx.stop_receiving.cancelled() => Event::Stopped,
        }
    }

    async fn acquire(&mut self) -> Event {
        let Some(op) = self.state.op else {
            return Event::Stopped;
        };
        let mut permit = self.permit.take().unwrap_or_default();
        // Listed while waiting, so handoff can give back what this replica cannot start soon.
        let ticket = self
            .ctx
            .waiting(op)
            .enter(self.msg.receive_count < super::handoff::MAX_RECEIVES);
        // A start that asked while its instance was open holds no promise: if the instance
        // fills while it waits for its token, it goes back to asking (before the token is
        // spent on a start its claim would refuse; the rate is shared with other instances).
        let ctx = self.ctx;
        let instance = self.job().map(|j| j.instance_id.clone());
        let watch = match (op, instance) {
            (Operation::StartChatContact, Some(i)) if !permit.has_promise() => Some(i),
            _ => None,
        };
        let waited = {
            let acquiring = ctx.acquire(op, &mut permit);
            tokio::pin!(acquiring);
            let mut watching = watch.is_some();
            loop {
                let changed = async {
                    match self.changes.as_mut().filter(|_| watching) {
                        Some(rx) => rx.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    waited = &mut acquiring => break waited,
                    _ = ctx.stop_receiving.cancelled() => return Event::Stopped,
                    _ = ticket.handed_off() => return Event::HandedOff,
                    alive = changed => {
                        if !alive {
                            // The instance's machine was forgotten (open, nothing in flight):
                            // nothing to watch, and no busy loop on a closed channel.
                            watching = false;
                        } else if watch.as_deref().is_some_and(|i| ctx.capacity.paced(i)) {
                            return Event::Woke;
                        }
                    }
                }
            }
        };
        self.ctx
            .metrics
            .rate_wait
            .with_label_values(&[op.as_str()])
            .observe(waited.as_secs_f64());
        self.permit = Some(permit);
        Event::Permitted
    }

    async fn call(&mut self) -> Event {
        let (Some(op), Ok(job)) = (self.state.op, self.parsed.as_ref()) else {
            return Event::Stopped;
        };
        let permit = self.permit.take().unwrap_or_default();
        if self.state.calls == 1 {
            observe_age(self.ctx, self.msg, "started");
        }
        let token = job.client_token();
        let call_started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            r = call(self.ctx, op, job, &token) => r,
            _ = self.ctx.abandon.cancelled() => {
                warn!(attempt = self.state.calls, "grace period over during a call; releasing the job (its ClientToken makes a retry safe)");
                return Event::Stopped;
            }
        };
        let code = match &outcome {
            Ok(_) => "OK",
            Err(e) => e.code.as_str(),
        };
        let metrics = &self.ctx.metrics;
        metrics
            .connect_calls
            .with_label_values(&[op.as_str(), code])
            .inc();
        metrics
            .connect_call_duration
            .with_label_values(&[op.as_str()])
            .observe(call_started.elapsed().as_secs_f64());
        permit.report(outcome.as_ref().err().map(|e| e.class));
        credentials_health(self.ctx, op, &outcome);
        match outcome {
            Ok(ok) => {
                match &ok {
                    CallOk::Started(chat) => {
                        info!(attempt = self.state.calls, contact_id = %chat.contact_id, "chat resumed")
                    }
                    CallOk::Associated(_) => {
                        info!(attempt = self.state.calls, "persistent contact associated")
                    }
                }
                self.response = Some(ok);
                Event::Answered(Answer::Ok)
            }
            Err(e) => {
                warn!(attempt = self.state.calls, code = %e.code, class = ?e.class, "Connect call failed");
                Event::Answered(Answer::Err {
                    class: e.class,
                    code: e.code,
                    message: e.message,
                })
            }
        }
    }

    async fn backoff(&mut self, until: tokio::time::Instant) -> Event {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => Event::Woke,
            _ = self.ctx.stop_receiving.cancelled() => Event::Stopped,
        }
    }

    fn result(&self, verdict: &Verdict) -> JobResult {
        let msg = self.msg;
        let rc = msg.receive_count;
        let now = OffsetDateTime::now_utc();
        let (job_id, action) = match &self.parsed {
            Ok(j) => (Some(j.job_id.clone()), Some(j.action)),
            Err(e) => (e.job_id.clone(), e.action),
        };
        let failed = |code: &str, message: String| {
            JobResult::failed(
                job_id.clone(),
                action,
                &msg.message_id,
                rc,
                now,
                code,
                message,
            )
        };
        match (verdict, self.job(), &self.response) {
            (Verdict::Succeeded, Some(job), Some(CallOk::Started(chat))) => {
                JobResult::started_chat(
                    job,
                    &msg.message_id,
                    rc,
                    now,
                    chat.contact_id.clone(),
                    chat.participant_id.clone(),
                    chat.participant_token.clone(),
                    chat.continued_from_contact_id.clone(),
                )
            }
            (Verdict::Succeeded, Some(job), Some(CallOk::Associated(a))) => JobResult::associated(
                job,
                &msg.message_id,
                rc,
                now,
                a.continued_from_contact_id.clone(),
            ),
            (Verdict::Succeeded, _, _) => failed(
                codes::RETRIES_EXHAUSTED,
                "internal error: a success without a response".to_owned(),
            ),
            (Verdict::Failed { code, message }, _, _) => failed(code, message.clone()),
            (Verdict::Invalid { message }, _, _) => failed(codes::INVALID_JOB, message.clone()),
            (Verdict::Expired, job, _) => failed(codes::EXPIRED, expired_message(job)),
            (Verdict::RetriesExhausted, _, _) => {
                let to = if self.ctx.queues.dead_letter.is_some() {
                    "; moved to the dead-letter queue"
                } else {
                    ""
                };
                failed(
                    codes::RETRIES_EXHAUSTED,
                    format!(
                        "the job was received {rc} times, more than MAX_RECEIVE_COUNT ({}), without finishing{to}",
                        self.ctx.settings.max_receive_count
                    ),
                )
            }
        }
    }

    async fn publish(&mut self, verdict: Verdict) -> Event {
        // No call follows (an expired job may hold an unused permit): report it now.
        self.permit = None;
        self.hold = None;
        let result = self.result(&verdict);
        let outcome = result.status.as_str();
        let code = result.error.as_ref().map(|e| e.code.clone());
        if self.state.publish_failures == 0 {
            match &verdict {
                Verdict::Invalid { message } => {
                    warn!(code = codes::INVALID_JOB, error = %message, "invalid job")
                }
                Verdict::RetriesExhausted => {
                    warn!(code = codes::RETRIES_EXHAUSTED, "giving up on the job")
                }
                _ => {}
            }
        }
        let dead_letter = (verdict == Verdict::RetriesExhausted
            && self.ctx.queues.dead_letter.is_some())
        .then(|| OutgoingMessage {
            body: self.msg.body.clone(),
            attributes: self.msg.attributes.clone(),
        });
        let published = self
            .ctx
            .settle(
                result,
                &self.msg.receipt_handle,
                self.inflight_id,
                dead_letter,
            )
            .await;
        if published {
            self.ctx
                .metrics
                .job_duration
                .observe(self.started.elapsed().as_secs_f64());
            observe_age(self.ctx, self.msg, "completed");
            info!(
                outcome,
                code = code.as_deref().unwrap_or(""),
                publish_retries = self.state.publish_failures,
                "job finished"
            );
        } else {
            warn!(
                outcome,
                failures = self.state.publish_failures + 1,
                "result not published; retrying while the job stays hidden"
            );
        }
        Event::Published(published)
    }

    async fn give_back(&mut self, after: Duration, reason: RequeueReason) {
        // Nothing more to call: the permit (if any) reports neutral, the hold ends.
        self.permit = None;
        self.hold = None;
        let ctx = self.ctx;
        let ok = ctx
            .inflight
            .give_back(
                ctx.queue.as_ref(),
                &ctx.queues.jobs,
                self.inflight_id,
                after,
            )
            .await;
        ctx.metrics
            .jobs_requeued
            .with_label_values(&[reason.as_str()])
            .inc();
        if !ok {
            ctx.metrics
                .sqs_errors
                .with_label_values(&["ChangeMessageVisibilityBatch", "GiveBackFailed"])
                .inc();
        }
        info!(
            reason = reason.as_str(),
            delay_s = after.as_secs(),
            "job given back to the queue"
        );
    }

    /// Waiting for chat capacity must not burn a job's retry budget, yet every give-back raises
    /// SQS's receive count. So when the next receive would exceed `MAX_RECEIVE_COUNT`, the job is
    /// sent again as a new message (same body and attributes, delayed, its first send time kept
    /// in an attribute) and the old one deleted. If the delete fails, both copies carry the same
    /// jobId and ClientToken: the second call is a replay and opens no second chat.
    async fn recycle(&mut self, after: Duration) -> Event {
        self.permit = None;
        self.hold = None;
        let (ctx, msg) = (self.ctx, self.msg);
        let mut attributes: Vec<(String, String)> = msg
            .attributes
            .iter()
            .filter(|(k, _)| k != ORIGINAL_SENT_ATTRIBUTE)
            .cloned()
            .collect();
        if let Some(sent) = original_sent_ms(msg) {
            attributes.push((ORIGINAL_SENT_ATTRIBUTE.to_owned(), sent.to_string()));
        }
        let copy = OutgoingMessage {
            body: msg.body.clone(),
            attributes,
        };
        let failure = match ctx.queue.send_delayed(&ctx.queues.jobs, &copy, after).await {
            Ok(failures) => failures.into_iter().next().map(|f| f.code),
            Err(e) => Some(e.code),
        };
        if let Some(code) = failure {
            // Loud: without the copy the job is given back as is and may end RetriesExhausted
            // (e.g. a task role without sqs:SendMessage on the jobs queue).
            ctx.metrics
                .sqs_errors
                .with_label_values(&["SendMessage", &code])
                .inc();
            ctx.metrics.recycle_failures.inc();
            warn!(
                job_id = self.job().map_or("", |j| j.job_id.as_str()),
                message_id = %msg.message_id,
                code = %code,
                "recycling the job as a new message failed; giving it back as is (it may reach MAX_RECEIVE_COUNT)"
            );
            return Event::Recycled(false);
        }
        ctx.inflight.remove(self.inflight_id).await;
        if let Err(e) = ctx
            .queue
            .delete_batch(&ctx.queues.jobs, std::slice::from_ref(&msg.receipt_handle))
            .await
        {
            ctx.metrics
                .sqs_errors
                .with_label_values(&["DeleteMessageBatch", &e.code])
                .inc();
        }
        let reason = self
            .state
            .recycling
            .map_or(RequeueReason::Capacity, |r| r.1);
        ctx.metrics
            .jobs_requeued
            .with_label_values(&[reason.as_str()])
            .inc();
        info!(
            reason = reason.as_str(),
            delay_s = after.as_secs(),
            "job recycled as a new message (its wait does not use up its receives)"
        );
        Event::Recycled(true)
    }
}

/// Connect's answer about the worker's credentials: a refusal turns `/readyz` to 503 and is
/// counted; the next success turns it back. Each transition is logged once.
fn credentials_health<Q, C>(
    ctx: &Context<Q, C>,
    op: Operation,
    outcome: &Result<CallOk, ConnectError>,
) {
    match outcome {
        Ok(_) => {
            if ctx.health.connect_call_succeeded() {
                info!("Amazon Connect accepts the worker's credentials again; ready");
            }
        }
        Err(e) if e.class == ErrorClass::Credentials => {
            ctx.metrics
                .credential_errors
                .with_label_values(&[op.as_str(), &e.code])
                .inc();
            if ctx.health.connect_credentials_refused(&e.code) {
                tracing::error!(
                    code = %e.code,
                    error = %e.message,
                    "Amazon Connect refuses the worker's credentials (expired session, unknown key, bad signature or clock drift); jobs go back to SQS and /readyz is 503 until a call succeeds"
                );
            }
        }
        Err(_) => {}
    }
}

fn expired_message(job: Option<&Job>) -> String {
    match job.and_then(|j| j.not_after).and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    }) {
        Some(t) => {
            format!("the job was not started before its notAfter ({t}), so it was not started")
        }
        None => "the job expired before it was started".to_owned(),
    }
}

/// When the job was first sent: a recycled job carries it in an attribute.
fn original_sent_ms(msg: &ReceivedMessage) -> Option<u64> {
    msg.attributes
        .iter()
        .find(|(k, _)| k == ORIGINAL_SENT_ATTRIBUTE)
        .and_then(|(_, v)| v.parse().ok())
        .or(msg.sent_timestamp_ms)
}

fn observe_age<Q, C>(ctx: &Context<Q, C>, msg: &ReceivedMessage, stage: &str) {
    if let Some(sent) = original_sent_ms(msg) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        ctx.metrics
            .job_age
            .with_label_values(&[stage])
            .observe(now.saturating_sub(sent) as f64 / 1000.0);
    }
}

async fn call<Q, C: ConnectApi>(
    ctx: &Context<Q, C>,
    op: Operation,
    job: &Job,
    token: &str,
) -> Result<CallOk, ConnectError> {
    match op {
        Operation::StartChatContact => ctx
            .connect
            .start_chat(job, token)
            .await
            .map(CallOk::Started),
        Operation::CreatePersistentContactAssociation => ctx
            .connect
            .associate(job, token)
            .await
            .map(CallOk::Associated),
    }
}

/// The decision's jitter sample in `[0, 1)`: random in the worker (replicas must not back off
/// in step); in unit tests a fixed sequence per thread, so a paused-time test's outcome does not
/// depend on the draws (a throttled job's backoff decided whether the handoff test's last job
/// went back before the fleet finished: one run in 15 failed under load).
fn jitter() -> f64 {
    #[cfg(not(test))]
    {
        rand::random()
    }
    #[cfg(test)]
    {
        thread_local! {
            static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0x5EED_1234) };
        }
        NEXT.with(|c| {
            // splitmix64
            let z = c.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            c.set(z);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
            (x >> 11) as f64 / (1u64 << 53) as f64
        })
    }
}
