//! The pipeline: everything between a message on the jobs queue and its result on the results
//! queue. One [`Context`] is shared by:
//! - [`receiver`]: long-polls for as many messages as there are free slots;
//! - [`process`]: works one job and decides its ending;
//! - [`inflight`]: the registry of received messages and the visibility heartbeat;
//! - [`settle`]: publishes results and deletes jobs in batches;
//! - [`depth`]: the one reader of the queues' depths (sharers, handoff, the gauge);
//! - [`handoff`]: gives back waiting jobs this replica cannot start soon;
//! - [`groups`]: the jobs of one FIFO group one at a time, in order;
//! - [`mix`]: the recent mix of operations, to size the work the receiver holds;
//! - [`sharers`]: how many replicas of ours share the quota, from the jobs queue, for the limiters;
//! - [`permit`]: a call's permit, which owes every limiter its one feedback;
//! - [`contact_events`]: chat ends from Connect's contact events, for the capacity machines.
//!
//! Shutdown ([`Worker::run`]): on the stop signal the receiver stops at once (the long poll is
//! dropped), jobs not yet calling Connect are released with visibility 0, calls on the wire get
//! until the grace period ends, then the remaining jobs are released; results are flushed and the
//! run returns. Nothing is deleted without its result published first.

pub mod contact_events;
pub mod depth;
pub mod groups;
pub mod handoff;
pub mod inflight;
pub mod mix;
pub mod permit;
pub mod process;
pub mod receiver;
pub mod settle;
pub mod sharers;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::connect::{ConnectApi, Operation};
use crate::decide::DecideSettings;
use crate::http::Health;
use crate::metrics::Metrics;
use crate::outcome::JobResult;
use crate::queue::{MessageQueue, OutgoingMessage};
use crate::rate::AdaptiveLimiter;
use crate::rate::capacity::CapacitySettings;
use crate::rate::fleet::{FleetLimiter, FleetLink, FleetMetrics, FleetOptions, FleetState};
use crate::rate::instances::CapacityBook;
use inflight::InFlight;
use permit::Permit;
pub use settle::Queues;
use settle::{SettleRequest, Settler};

/// What every part of the pipeline shares.
pub struct Context<Q, C> {
    pub settings: Settings,
    pub queues: Queues,
    pub queue: Arc<Q>,
    pub connect: Arc<C>,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub start_limiter: Arc<AdaptiveLimiter>,
    pub associate_limiter: Arc<AdaptiveLimiter>,
    /// The fleet-wide limiters in Redis (`REDIS_URL`), one per operation, after the local ones.
    pub fleet: Option<FleetLimiters>,
    /// Chat capacity, one machine per Connect instance.
    pub capacity: Arc<CapacityBook>,
    /// The constants of the per-job decision (`crate::decide`).
    pub decide: DecideSettings,
    pub inflight: Arc<InFlight>,
    /// Jobs waiting for StartChatContact / CreatePersistentContactAssociation tokens.
    pub waiting_start: Arc<handoff::Waiting>,
    pub waiting_associate: Arc<handoff::Waiting>,
    /// Whether the jobs queue was last seen drained, and by when the fleet can be done (handoff's
    /// depth checks).
    pub handoff: handoff::BacklogState,
    /// The jobs queue's last depth reading, shared by everything that reads it.
    pub jobs_depth: depth::JobsDepth,
    pub mix: mix::JobMix,
    /// The order of FIFO groups' jobs held here.
    pub groups: Arc<groups::GroupOrder>,
    /// Cancelled on SIGTERM/SIGINT: stop receiving, release waiting jobs.
    pub stop_receiving: CancellationToken,
    /// Cancelled when the grace period is over: abandon calls on the wire.
    pub abandon: CancellationToken,
    settle_tx: mpsc::Sender<SettleRequest>,
}

impl<Q: MessageQueue, C> Context<Q, C> {
    /// The jobs queue's depth, a shared reading if one is younger than `fresh_within`
    /// ([`depth::JobsDepth`]); `None` if SQS did not answer (counted).
    pub async fn jobs_depth(&self, fresh_within: Duration) -> Option<crate::queue::QueueDepth> {
        self.jobs_depth
            .read(&*self.queue, &self.queues, &self.metrics, fresh_within)
            .await
    }
}

impl<Q, C> Context<Q, C> {
    pub fn limiter(&self, op: Operation) -> &Arc<AdaptiveLimiter> {
        match op {
            Operation::StartChatContact => &self.start_limiter,
            Operation::CreatePersistentContactAssociation => &self.associate_limiter,
        }
    }

    /// The rate at which this replica can start `op` calls now: the rate limiter's, and for
    /// StartChatContact, when every instance it works for is out of chat capacity, what their
    /// capacity machines allow (so the receiver holds only the jobs they can start soon).
    pub fn start_rate(&self, op: Operation) -> f64 {
        let rate = self.limiter(op).allowed_rate();
        match (op, self.capacity.start_rate_bound()) {
            (Operation::StartChatContact, Some(bound)) => rate.min(bound),
            _ => rate,
        }
    }

    /// The list of jobs waiting for `op`'s tokens.
    pub fn waiting(&self, op: Operation) -> &Arc<handoff::Waiting> {
        match op {
            Operation::StartChatContact => &self.waiting_start,
            Operation::CreatePersistentContactAssociation => &self.waiting_associate,
        }
    }

    /// Waits for the operation's rate tokens into `permit` and returns the wait: first the local
    /// adaptive limiter (it still adapts to throttles from callers outside the fleet), then with
    /// `REDIS_URL` the fleet-wide slot. Cancel-safe: whatever was granted is in the permit,
    /// which reports neutral when dropped.
    pub async fn acquire(&self, op: Operation, permit: &mut Permit) -> Duration {
        let local = self.limiter(op);
        let mut waited = local.acquire().await;
        permit.granted(local.clone());
        if let Some(fleet) = &self.fleet {
            waited += fleet.get(op).acquire().await;
        }
        self.metrics
            .allowed_rate
            .with_label_values(&[op.as_str()])
            .set(local.allowed_rate());
        waited
    }

    /// Runs `fut` unless receiving stops first (`None`).
    pub async fn until_stopped<F: std::future::Future>(&self, fut: F) -> Option<F::Output> {
        tokio::select! {
            out = fut => Some(out),
            _ = self.stop_receiving.cancelled() => None,
        }
    }

    /// Hands a finished job to the settler and waits until it is settled; `true` when published
    /// and deleted. On `false` the job is still registered in flight (the heartbeat keeps it
    /// hidden) and the caller decides what next.
    pub async fn settle(
        &self,
        result: JobResult,
        receipt: &str,
        inflight_id: u64,
        dead_letter: Option<OutgoingMessage>,
    ) -> bool {
        let (done, settled) = oneshot::channel();
        let req = SettleRequest {
            result,
            receipt_handle: receipt.to_owned(),
            inflight_id,
            dead_letter,
            done,
        };
        if self.settle_tx.send(req).await.is_err() {
            return false;
        }
        settled.await.unwrap_or(false)
    }
}

/// The fleet-wide limiters and their shared link to Redis.
pub struct FleetLimiters {
    pub link: Arc<FleetLink>,
    pub start_chat: FleetLimiter,
    pub associate: FleetLimiter,
}

impl FleetLimiters {
    fn new(settings: &Settings, metrics: &Metrics) -> Option<Self> {
        let fleet = settings.fleet.as_ref()?;
        let link = FleetLink::new(
            FleetOptions::from_setting(fleet),
            FleetMetrics {
                state: metrics.fleet_limiter_state.clone(),
                errors: metrics.fleet_limiter_errors.clone(),
            },
        );
        // The URL was validated with the settings; should the redis crate still refuse it,
        // say so and run on local control rather than not at all.
        let link = match link {
            Ok(link) => Arc::new(link),
            Err(e) => {
                tracing::error!(error = %e, "fleet limiter disabled");
                return None;
            }
        };
        let limiter = |op: Operation, rate: crate::config::RateSetting| {
            FleetLimiter::new(link.clone(), op.as_str(), rate.per_second, rate.burst)
        };
        Some(FleetLimiters {
            start_chat: limiter(Operation::StartChatContact, settings.start_chat),
            associate: limiter(
                Operation::CreatePersistentContactAssociation,
                settings.associate,
            ),
            link,
        })
    }

    pub fn get(&self, op: Operation) -> &FleetLimiter {
        match op {
            Operation::StartChatContact => &self.start_chat,
            Operation::CreatePersistentContactAssociation => &self.associate,
        }
    }
}

/// What a run did, for the exit log line and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Jobs still in flight when the grace period ended (released to SQS).
    pub released_after_grace: usize,
}

/// The assembled worker.
pub struct Worker<Q, C> {
    ctx: Arc<Context<Q, C>>,
    settle_rx: mpsc::Receiver<SettleRequest>,
}

impl<Q: MessageQueue, C: ConnectApi> Worker<Q, C> {
    pub fn new(
        settings: Settings,
        queue: Arc<Q>,
        connect: Arc<C>,
        metrics: Metrics,
        health: Arc<Health>,
        stop: CancellationToken,
    ) -> Self {
        let queues = Queues {
            jobs: settings.jobs_queue_url.clone(),
            results: settings.results_queue_url.clone(),
            dead_letter: settings.dead_letter_queue_url.clone(),
        };
        let start_limiter = Arc::new(AdaptiveLimiter::new(
            settings.start_chat.per_second,
            settings.start_chat.burst,
        ));
        let associate_limiter = Arc::new(AdaptiveLimiter::new(
            settings.associate.per_second,
            settings.associate.burst,
        ));
        for (op, l) in [
            (Operation::StartChatContact, &start_limiter),
            (
                Operation::CreatePersistentContactAssociation,
                &associate_limiter,
            ),
        ] {
            metrics
                .allowed_rate
                .with_label_values(&[op.as_str()])
                .set(l.allowed_rate());
            metrics
                .rate_ceiling
                .with_label_values(&[op.as_str()])
                .set(l.ceiling());
        }
        let fleet = FleetLimiters::new(&settings, &metrics);
        if fleet.is_none() {
            metrics.fleet_limiter_state.set(FleetState::Disabled as i64);
        }
        let capacity = {
            let (limited, rate) = (
                metrics.capacity_limited.clone(),
                metrics.capacity_start_rate.clone(),
            );
            let (forget_limited, forget_rate) = (limited.clone(), rate.clone());
            Arc::new(CapacityBook::new(
                CapacitySettings {
                    contact_events: settings.contact_events_queue_url.is_some(),
                    ..CapacitySettings::default()
                },
                move |g| {
                    limited.with_label_values(&[&g.instance]).set(g.state_code);
                    rate.with_label_values(&[&g.instance])
                        .set(g.start_rate.unwrap_or(0.0));
                },
                move |instance| {
                    let _ = forget_limited.remove_label_values(&[instance]);
                    let _ = forget_rate.remove_label_values(&[instance]);
                },
            ))
        };
        let (settle_tx, settle_rx) = mpsc::channel(settings.max_in_flight.max(16));
        let ctx = Arc::new(Context {
            queues,
            queue,
            connect,
            metrics,
            health,
            start_limiter,
            associate_limiter,
            fleet,
            capacity,
            decide: DecideSettings {
                max_receive_count: settings.max_receive_count,
                ..DecideSettings::default()
            },
            inflight: Arc::new(InFlight::new()),
            waiting_start: Arc::default(),
            waiting_associate: Arc::default(),
            handoff: handoff::BacklogState::default(),
            jobs_depth: depth::JobsDepth::default(),
            mix: mix::JobMix::default(),
            groups: Arc::default(),
            stop_receiving: stop,
            abandon: CancellationToken::new(),
            settle_tx,
            settings,
        });
        Worker { ctx, settle_rx }
    }

    pub fn context(&self) -> Arc<Context<Q, C>> {
        self.ctx.clone()
    }

    /// Runs until the stop token is cancelled and everything in flight is settled or released.
    pub async fn run(self) -> RunSummary {
        let Worker { ctx, settle_rx } = self;
        let background_stop = CancellationToken::new();
        let settler = tokio::spawn(
            Settler {
                queue: ctx.queue.clone(),
                queues: ctx.queues.clone(),
                inflight: ctx.inflight.clone(),
                metrics: ctx.metrics.clone(),
                connect_margin: ctx.settings.connect_margin,
            }
            .run(settle_rx),
        );
        let heartbeat = tokio::spawn(inflight::heartbeat(
            ctx.inflight.clone(),
            ctx.queue.clone(),
            ctx.queues.jobs.clone(),
            ctx.settings.visibility_timeout,
            ctx.metrics.clone(),
            background_stop.clone(),
        ));
        let depth = tokio::spawn(depth::poll(ctx.clone(), background_stop.clone()));

        let handoff = tokio::spawn(handoff::run(ctx.clone(), background_stop.clone()));
        // Before the first receive: siblings' messages in flight make this replica join the quota
        // at an aligned read instead of at the ceiling (`sharers`).
        let first = sharers::first_read(&ctx).await;
        let sharers = tokio::spawn(sharers::run(ctx.clone(), background_stop.clone(), first));
        let events = tokio::spawn(contact_events::run(ctx.clone(), background_stop.clone()));
        if let Some(fleet) = &ctx.fleet {
            // Reach Redis before the first receive, so the state gauge and the log tell at
            // start-up and the first jobs already take fleet slots: while one connection attempt
            // is under way every other caller goes local, and a fleet restarting together would
            // spend its start-up uncoordinated, the storm Redis is there to prevent. Bounded by
            // the connect and call timeouts (about 1.2 s); with Redis down the worker goes on
            // locally as before.
            fleet.link.check().await;
        }
        let slots = Arc::new(Semaphore::new(ctx.settings.max_in_flight));
        let tasks = TaskTracker::new();
        receiver::run(ctx.clone(), slots.clone(), tasks.clone()).await;

        // Receiving has stopped. Waiting jobs release themselves; calls on the wire get the grace period.
        ctx.health.stopping();
        tasks.close();
        let in_flight = ctx.inflight.len().await;
        tracing::info!(
            in_flight,
            grace_s = ctx.settings.shutdown_grace.as_secs(),
            "stopping: no more receives"
        );
        let mut summary = RunSummary::default();
        if tokio::time::timeout(ctx.settings.shutdown_grace, tasks.wait())
            .await
            .is_err()
        {
            summary.released_after_grace = ctx.inflight.len().await;
            tracing::warn!(
                remaining = summary.released_after_grace,
                "grace period over; releasing the jobs still in flight"
            );
            ctx.abandon.cancel();
            // Releasing is one SQS call per job; bound it so a dead SQS cannot hold the exit.
            let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
        }
        background_stop.cancel();
        drop(ctx);
        let _ = settler.await;
        let _ = heartbeat.await;
        let _ = depth.await;
        let _ = handoff.await;
        let _ = sharers.await;
        let _ = events.await;
        summary
    }
}

#[cfg(test)]
mod tests;
