//! Working one job, from the received message to an [`Ending`]:
//!
//! 1. Received more than `MAX_RECEIVE_COUNT` times → `RetriesExhausted`, moved to the DLQ.
//! 2. Parse and validate → `InvalidJob` naming the field. Past `notAfter` → `Expired`.
//! 3. Per attempt: StartChatContact asks the capacity gate (closed → back to SQS until the gate
//!    may probe); wait for a rate token; check `notAfter` again; call Connect with the job's
//!    ClientToken; feed the outcome to the limiter and the gate.
//! 4. A failure goes to [`retry::after_failure`], whose decision this file carries out.
//!
//! Shutdown: a job that is waiting (for a token or a backoff) when receiving stops is released at
//! once (visibility 0); a call on the wire is finished, unless the grace period runs out first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use tracing::{Instrument, info, warn};

use super::Context;
use crate::connect::{ConnectApi, ConnectError, ErrorClass, Operation};
use crate::job::{Action, Job, parse_job};
use crate::outcome::{JobResult, codes};
use crate::queue::{MessageQueue, ORIGINAL_SENT_ATTRIBUTE, OutgoingMessage, ReceivedMessage};
use crate::rate::{Admission, CapacityOutcome, GateCall};
use crate::retry::{self, Decision, RequeueReason};

/// How a job's time in this worker ends.
#[derive(Debug)]
pub enum Ending {
    /// Publish this result and delete the job (after moving it to the DLQ when `dead_letter`).
    Settle {
        result: JobResult,
        dead_letter: bool,
    },
    /// Give the message back to SQS, visible again after `after`.
    GiveBack {
        after: Duration,
        reason: RequeueReason,
    },
}

/// Works one message and carries out its ending. Holds the in-flight slot until settled.
pub async fn process<Q: MessageQueue, C: ConnectApi>(
    ctx: std::sync::Arc<Context<Q, C>>,
    msg: ReceivedMessage,
    inflight_id: u64,
) {
    let span = tracing::info_span!("job", message_id = %msg.message_id, job_id = tracing::field::Empty, receive_count = msg.receive_count);
    async move {
        let started = tokio::time::Instant::now();
        let ending = work(&ctx, &msg).await;
        match ending {
            Ending::Settle {
                result,
                dead_letter,
            } => {
                let outcome = result.status.as_str();
                let code = result.error.as_ref().map(|e| e.code.clone());
                let dead_letter = dead_letter.then(|| OutgoingMessage {
                    body: msg.body.clone(),
                    attributes: msg.attributes.clone(),
                });
                let settled = ctx
                    .settle(result, &msg.receipt_handle, inflight_id, dead_letter)
                    .await;
                ctx.metrics
                    .job_duration
                    .observe(started.elapsed().as_secs_f64());
                observe_age(&ctx, &msg, "completed");
                info!(
                    outcome,
                    code = code.as_deref().unwrap_or(""),
                    settled,
                    "job finished"
                );
            }
            Ending::GiveBack { after, reason } => {
                // Neither a capacity wait nor a credential outage is the job's: neither may use
                // up its receive budget.
                if matches!(reason, RequeueReason::Capacity | RequeueReason::Credentials)
                    && msg.receive_count >= ctx.settings.max_receive_count
                    && recycle(&ctx, &msg, inflight_id, after).await
                {
                    ctx.metrics
                        .jobs_requeued
                        .with_label_values(&[reason.as_str()])
                        .inc();
                    info!(
                        reason = reason.as_str(),
                        delay_s = after.as_secs(),
                        "job recycled as a new message (its wait does not use up its receives)"
                    );
                    return;
                }
                let ok = ctx
                    .inflight
                    .give_back(ctx.queue.as_ref(), &ctx.queues.jobs, inflight_id, after)
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
        }
    }
    .instrument(span)
    .await
}

/// Waiting for chat capacity must not burn a job's retry budget, yet every give-back raises SQS's
/// receive count. So when the next receive would exceed `MAX_RECEIVE_COUNT`, the job is sent again
/// as a new message (same body and attributes, delayed, its first send time kept in an attribute)
/// and the old one deleted. If the delete fails, both copies carry the same jobId and ClientToken:
/// the second call is a replay and opens no second chat. `false` when the copy could not be sent.
async fn recycle<Q: MessageQueue, C: ConnectApi>(
    ctx: &Context<Q, C>,
    msg: &ReceivedMessage,
    inflight_id: u64,
    after: Duration,
) -> bool {
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
    let failed = match ctx.queue.send_delayed(&ctx.queues.jobs, &copy, after).await {
        Ok(failures) if failures.is_empty() => None,
        Ok(failures) => Some(
            failures
                .first()
                .map_or_else(|| "EntryFailed".to_owned(), |f| f.code.clone()),
        ),
        Err(e) => Some(e.code.clone()),
    };
    if let Some(code) = failed {
        // Loud: without the copy the job is given back as is and may end RetriesExhausted
        // (e.g. a task role without sqs:SendMessage on the jobs queue).
        ctx.metrics
            .sqs_errors
            .with_label_values(&["SendMessage", &code])
            .inc();
        ctx.metrics.recycle_failures.inc();
        warn!(
            job_id = job_id(msg).as_deref().unwrap_or(""),
            message_id = %msg.message_id,
            code = %code,
            "recycling the job as a new message failed; giving it back as is (it may reach MAX_RECEIVE_COUNT)"
        );
        return false;
    }
    ctx.inflight.remove(inflight_id).await;
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
    true
}

/// The job id of a message, when its body has one (for log lines outside the job's span).
fn job_id(msg: &ReceivedMessage) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(&msg.body)
        .ok()?
        .get("jobId")?
        .as_str()
        .map(str::to_owned)
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

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

async fn work<Q: MessageQueue, C: ConnectApi>(
    ctx: &Context<Q, C>,
    msg: &ReceivedMessage,
) -> Ending {
    let rc = msg.receive_count;
    let fail = |job_id: Option<String>, action: Option<Action>, code: &str, message: String| {
        Ending::Settle {
            result: JobResult::failed(job_id, action, &msg.message_id, rc, now(), code, message),
            dead_letter: false,
        }
    };

    let parsed = parse_job(&msg.body, &ctx.settings.defaults);
    if let Some(id) = parsed
        .as_ref()
        .map(|j| Some(j.job_id.as_str()))
        .unwrap_or_else(|e| e.job_id.as_deref())
    {
        tracing::Span::current().record("job_id", id);
    }

    if retry::receive_limit_reached(rc, ctx.settings.max_receive_count) {
        let (job_id, action) = match &parsed {
            Ok(j) => (Some(j.job_id.clone()), Some(j.action)),
            Err(e) => (e.job_id.clone(), e.action),
        };
        let to = if ctx.queues.dead_letter.is_some() {
            "; moved to the dead-letter queue"
        } else {
            ""
        };
        let message = format!(
            "the job was received {rc} times, more than MAX_RECEIVE_COUNT ({}), without finishing{to}",
            ctx.settings.max_receive_count
        );
        warn!(code = codes::RETRIES_EXHAUSTED, "giving up on the job");
        let mut ending = fail(job_id, action, codes::RETRIES_EXHAUSTED, message);
        if let Ending::Settle { dead_letter, .. } = &mut ending {
            *dead_letter = ctx.queues.dead_letter.is_some();
        }
        return ending;
    }

    let job = match parsed {
        Ok(job) => job,
        Err(e) => {
            warn!(code = codes::INVALID_JOB, error = %e, "invalid job");
            return fail(
                e.job_id.clone(),
                e.action,
                codes::INVALID_JOB,
                e.to_string(),
            );
        }
    };
    if job.is_expired(now()) {
        return expired(&job, msg);
    }
    call_with_retries(ctx, &job, msg).await
}

fn expired(job: &Job, msg: &ReceivedMessage) -> Ending {
    let message = match job.not_after.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    }) {
        Some(t) => {
            format!("the job was not started before its notAfter ({t}), so it was not started")
        }
        None => "the job expired before it was started".to_owned(),
    };
    Ending::Settle {
        result: JobResult::failed(
            Some(job.job_id.clone()),
            Some(job.action),
            &msg.message_id,
            msg.receive_count,
            now(),
            codes::EXPIRED,
            message,
        ),
        dead_letter: false,
    }
}

async fn call_with_retries<Q: MessageQueue, C: ConnectApi>(
    ctx: &Context<Q, C>,
    job: &Job,
    msg: &ReceivedMessage,
) -> Ending {
    let op = match job.action {
        Action::StartPersistentChat => Operation::StartChatContact,
        Action::AssociatePersistentContact => Operation::CreatePersistentContactAssociation,
    };
    ctx.mix.record(op);
    let token = job.client_token();
    let mut schedule = ctx.retry.schedule();
    let release = Ending::GiveBack {
        after: Duration::ZERO,
        reason: RequeueReason::Shutdown,
    };
    let mut attempt: u32 = 0;
    // What is left of this job's time to wait in this worker for the capacity gate.
    let mut hold_budget = HOLD_FOR_GATE;
    // The gate's probe or a predicted release, claimed while held (see `hold_for_gate`): this
    // job's next call goes on it.
    let mut held: Option<GateCall> = None;
    let give_back_for_capacity = |retry_after: Duration| Ending::GiveBack {
        after: retry::capacity_wait(
            &ctx.retry,
            msg.receive_count,
            Some(retry_after),
            rand::random(),
        ),
        reason: RequeueReason::Capacity,
    };
    loop {
        // While the gate is closed, wait for it before queueing for tokens: a job that claims
        // the probe or a predicted release must not queue behind jobs that cannot call. (This
        // is also where a job refused by the gate, or by the limit itself, comes back to.)
        if op == Operation::StartChatContact && held.is_none() && ctx.gate.is_closed() {
            match hold_for_gate(ctx, &mut hold_budget).await {
                GateWait::Open => {}
                GateWait::Claimed(call) => held = Some(call),
                GateWait::GiveBack(retry_after) => return give_back_for_capacity(retry_after),
                GateWait::Stopped => return release,
            }
        }
        // The probe and a start on a predicted release go when the gate says, not at the
        // capacity pacer's rate (nor queued behind jobs that wait for it).
        let paced = held.is_none();
        // Wait for the tokens; when receiving stops meanwhile, or this replica cannot start the
        // job soon (handoff), the job goes back untouched.
        let ticket = ctx
            .waiting(op)
            .enter(msg.receive_count < super::handoff::MAX_RECEIVES);
        let waited = tokio::select! {
            waited = ctx.acquire(op, paced) => waited,
            _ = ctx.stop_receiving.cancelled() => {
                if let Some(call) = held { ctx.gate.report(call, CapacityOutcome::Inconclusive); }
                return release;
            }
            _ = ticket.handed_off() => {
                if let Some(call) = held { ctx.gate.report(call, CapacityOutcome::Inconclusive); }
                return Ending::GiveBack {
                    after: Duration::ZERO,
                    reason: RequeueReason::Handoff,
                };
            }
        };
        drop(ticket);
        ctx.metrics
            .rate_wait
            .with_label_values(&[op.as_str()])
            .observe(waited.as_secs_f64());

        // The gate is asked right before the call, not before the wait: jobs that queued for a
        // token while capacity ran out must not all call into the limit (only one probe goes).
        let gate_call = if op == Operation::StartChatContact {
            if let Some(call) = held.take() {
                Some(call)
            } else {
                match ctx.gate.admit() {
                    Admission::Open => Some(GateCall::Regular),
                    Admission::Probe => Some(GateCall::Probe),
                    Admission::Clocked { started } => Some(GateCall::Clocked { started }),
                    Admission::Closed { .. } => {
                        ctx.no_call(op, paced);
                        continue;
                    }
                }
            }
        } else {
            None
        };
        if job.is_expired(now()) {
            ctx.no_call(op, paced);
            if let Some(call) = gate_call {
                ctx.gate.report(call, CapacityOutcome::Inconclusive);
            }
            return expired(job, msg);
        }
        attempt += 1;
        if attempt == 1 {
            observe_age(ctx, msg, "started");
        }

        let call_started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            r = call(ctx, op, job, &token) => r,
            _ = ctx.abandon.cancelled() => {
                ctx.no_call(op, paced);
                if let Some(call) = gate_call { ctx.gate.report(call, CapacityOutcome::Inconclusive); }
                warn!(attempt, "grace period over during a call; releasing the job (its ClientToken makes a retry safe)");
                return release;
            }
        };
        let code = match &outcome {
            Ok(_) => "OK",
            Err(e) => e.code.as_str(),
        };
        ctx.metrics
            .connect_calls
            .with_label_values(&[op.as_str(), code])
            .inc();
        ctx.metrics
            .connect_call_duration
            .with_label_values(&[op.as_str()])
            .observe(call_started.elapsed().as_secs_f64());
        feed_back(ctx, op, gate_call, paced, &outcome);
        credentials_health(ctx, op, &outcome);

        let err = match outcome {
            Ok(CallOk::Started(chat)) => {
                info!(attempt, contact_id = %chat.contact_id, admission = gate_call.map(|c| c.as_str()), "chat resumed");
                return Ending::Settle {
                    result: JobResult::started_chat(
                        job,
                        &msg.message_id,
                        msg.receive_count,
                        now(),
                        chat.contact_id,
                        chat.participant_id,
                        chat.participant_token,
                        chat.continued_from_contact_id,
                    ),
                    dead_letter: false,
                };
            }
            Ok(CallOk::Associated(a)) => {
                info!(attempt, "persistent contact associated");
                return Ending::Settle {
                    result: JobResult::associated(
                        job,
                        &msg.message_id,
                        msg.receive_count,
                        now(),
                        a.continued_from_contact_id,
                    ),
                    dead_letter: false,
                };
            }
            Err(e) => e,
        };
        let decision = retry::after_failure(
            &ctx.retry,
            &err,
            schedule.next(),
            msg.receive_count,
            ctx.gate.reopens_in(),
            rand::random(),
        );
        warn!(attempt, code = %err.code, class = ?err.class, decision = ?decision, admission = gate_call.map(|c| c.as_str()), "Connect call failed");
        match decision {
            Decision::RetryAfter(delay) => {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = ctx.stop_receiving.cancelled() => return release,
                }
            }
            // The limit was hit and the gate closed: the top of the loop waits for a predicted
            // release or gives the job back to SQS.
            Decision::Requeue {
                reason: RequeueReason::Capacity,
                ..
            } if op == Operation::StartChatContact && ctx.gate.is_closed() => {}
            Decision::Requeue { after, reason } => return Ending::GiveBack { after, reason },
            Decision::Fail { code, message } => {
                return Ending::Settle {
                    result: JobResult::failed(
                        Some(job.job_id.clone()),
                        Some(job.action),
                        &msg.message_id,
                        msg.receive_count,
                        now(),
                        &code,
                        message,
                    ),
                    dead_letter: false,
                };
            }
        }
    }
}

/// Longest a start-chat job waits in this worker for a predicted release of chat capacity, over
/// all its waits, before it goes back to SQS. The receiver only takes the jobs that the releases
/// due within [`super::RELEASE_HORIZON`] will use, so a held job normally starts within that
/// horizon plus the spread of the releases; the budget is the backstop.
const HOLD_FOR_GATE: Duration = Duration::from_secs(10);

/// How a wait for the capacity gate ended.
enum GateWait {
    /// The gate opened: get tokens and ask it again.
    Open,
    /// This job claimed the gate's probe or a predicted release: its next call goes on it.
    Claimed(GateCall),
    /// The gate reopens too late for this job's budget: wait in SQS for this long.
    GiveBack(Duration),
    /// Receiving stopped (shutdown): release the job.
    Stopped,
}

/// Holds a start-chat job while the capacity gate is closed, if the gate's release clock predicts
/// releases of our chats and the next one (or the next probe) is due within the job's remaining
/// `budget`; otherwise the job goes back to SQS. A held job wakes when a call reports to the gate
/// (a probe or a predicted start succeeded or failed), when one of our chats is predicted to end,
/// or when the cooldown ends and it may claim the probe. No rate token is
/// taken while held, so jobs waiting here do not use up the pacers' slots.
async fn hold_for_gate<Q, C>(ctx: &Context<Q, C>, budget: &mut Duration) -> GateWait {
    loop {
        let mut changes = ctx.gate.changes();
        let retry_after = match ctx.gate.admit() {
            Admission::Open => return GateWait::Open,
            Admission::Probe => return GateWait::Claimed(GateCall::Probe),
            Admission::Clocked { started } => {
                return GateWait::Claimed(GateCall::Clocked { started });
            }
            Admission::Closed { retry_after } => retry_after,
        };
        // Only a predicted release is worth waiting for here; otherwise no one knows when
        // capacity comes back, and the job waits in SQS.
        if retry_after > *budget || !ctx.gate.predicts_releases() {
            return GateWait::GiveBack(retry_after);
        }
        let started = tokio::time::Instant::now();
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(retry_after) => {}
            _ = ctx.stop_receiving.cancelled() => return GateWait::Stopped,
        }
        *budget = budget.saturating_sub(started.elapsed());
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

enum CallOk {
    Started(crate::connect::StartedChat),
    Associated(crate::connect::Associated),
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

/// Tells the limiter what the call said about the rate quota and the gate what it said about chat
/// capacity. Only a throttle is a rate signal; only StartChatContact touches the gate.
fn feed_back<Q, C>(
    ctx: &Context<Q, C>,
    op: Operation,
    gate_call: Option<GateCall>,
    paced: bool,
    outcome: &Result<CallOk, ConnectError>,
) {
    let class = outcome.as_ref().err().map(|e| e.class);
    ctx.feedback(op, class, paced);
    ctx.metrics
        .allowed_rate
        .with_label_values(&[op.as_str()])
        .set(ctx.limiter(op).allowed_rate());
    if op == Operation::StartChatContact {
        let capacity = match class {
            None => CapacityOutcome::Started,
            Some(ErrorClass::LimitExceeded) => CapacityOutcome::LimitExceeded,
            Some(_) => CapacityOutcome::Inconclusive,
        };
        let call = gate_call.unwrap_or(GateCall::Regular);
        ctx.gate.report(call, capacity);
        if let GateCall::Clocked { .. } = call {
            let result = match capacity {
                CapacityOutcome::Started => "started",
                CapacityOutcome::LimitExceeded => "limit_exceeded",
                CapacityOutcome::Inconclusive => "other",
            };
            ctx.metrics
                .capacity_predicted_starts
                .with_label_values(&[result])
                .inc();
        }
        if let Some(lifetime) = ctx.gate.learned_lifetime() {
            ctx.metrics
                .capacity_chat_lifetime
                .set(lifetime.as_secs_f64());
        }
        ctx.metrics.capacity_gate_state.set(ctx.gate.state_code());
        ctx.metrics
            .capacity_allowed_rate
            .set(ctx.capacity_limiter.allowed_rate());
    }
}
