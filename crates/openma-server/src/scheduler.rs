//! The cluster's scheduler: periodic house-keeping that must run once per period however
//! many nodes share the database (expired files, storage metering, event log archival,
//! retention). Every node ticks; a run is claimed with one conditional UPDATE of the job's
//! row (due, and not held by another node), so exactly one node wins each period. A node
//! that dies mid-run holds the job until its claim expires, then another node runs it.
//! Work that is per process (idle sandboxes, idle MCP connections) does not come here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openma_core::Platform;
use openma_types::Timestamp;

/// How long a claim holds a job at least: a run that takes longer may be started again.
const MIN_CLAIM: Duration = Duration::from_secs(15 * 60);

/// What a run did, for the log: how many things, and what they were.
pub type Outcome = Result<(u64, &'static str), String>;

type Run = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

struct Job {
    name: &'static str,
    period: Duration,
    run: Run,
}

pub struct Scheduler {
    platform: Platform,
    /// This process's name in `locked_by`.
    node: String,
    jobs: Vec<Job>,
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_micros(t.as_micros().saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
}

impl Scheduler {
    pub fn new(platform: Platform) -> Self {
        let node = platform.ids.new_id("node").to_ascii_lowercase();
        Scheduler { platform, node, jobs: Vec::new() }
    }

    /// Registers a job run at most once per `period` across the cluster.
    pub fn add<F, Fut>(&mut self, name: &'static str, period: Duration, run: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        self.jobs.push(Job { name, period, run: Arc::new(move || Box::pin(run())) });
    }

    /// Runs, one after the other, every job that is due and that this node claims;
    /// returns the names of those it ran.
    pub async fn tick(&self) -> Vec<&'static str> {
        let mut ran = Vec::new();
        for job in &self.jobs {
            let now = self.platform.clock.now();
            let claimed = self
                .platform
                .store
                .claim_scheduled_job(job.name, &self.node, now, after(now, job.period), after(now, job.period.max(MIN_CLAIM)))
                .await;
            match claimed {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(job = job.name, error = %e, "cannot claim a scheduled job");
                    continue;
                }
            }
            let outcome = (job.run)().await;
            let error = match &outcome {
                Ok((0, _)) => None,
                Ok((n, what)) => {
                    tracing::info!(job = job.name, count = n, "scheduled job: {n} {what}");
                    None
                }
                Err(e) => {
                    tracing::warn!(job = job.name, error = %e, "scheduled job failed");
                    Some(e.as_str())
                }
            };
            let label = if error.is_some() { "error" } else { "ok" };
            metrics::counter!("openma_scheduled_job_runs_total", "job" => job.name, "outcome" => label).increment(1);
            if let Err(e) = self.platform.store.finish_scheduled_job(job.name, &self.node, self.platform.clock.now(), error).await {
                tracing::warn!(job = job.name, error = %e, "cannot release a scheduled job");
            }
            ran.push(job.name);
        }
        ran
    }

    /// Ticks for the life of the process, often enough for the shortest period.
    pub fn spawn(self) {
        let shortest = self.jobs.iter().map(|j| j.period).min().unwrap_or(Duration::from_secs(60));
        let every = (shortest / 4).clamp(Duration::from_millis(100), Duration::from_secs(15));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.tick().await;
            }
        });
    }
}

/// The shared house-keeping of a deployment, as scheduler jobs.
pub fn housekeeping(platform: &Platform, settings: &crate::config::Housekeeping) -> Scheduler {
    let mut s = Scheduler::new(platform.clone());
    let period = settings.period;
    // the bytes of expired files go (their metadata stays)
    let p = platform.clone();
    s.add("expired_files", period, move || {
        let p = p.clone();
        async move { p.purge_expired_files(500).await.map(|n| (n as u64, "expired files emptied")).map_err(|e| e.to_string()) }
    });
    // file storage is metered per whole hour; the first run after an hour ends records it
    let p = platform.clone();
    s.add("file_storage_metering", period, move || {
        let p = p.clone();
        async move { p.meter_file_storage().await.map(|n| (n, "storage ledger rows")).map_err(|e| e.to_string()) }
    });
    let (p, idle_after) = (platform.clone(), settings.archive_idle_after);
    s.add("event_log_archival", period, move || {
        let p = p.clone();
        async move {
            let idle_before = idle_after.map(|age| openma_core::retention::before(p.clock.now(), age));
            let r = p.archive_event_logs(idle_before).await.map_err(|e| e.to_string())?;
            Ok((r.sessions as u64, "session event logs archived"))
        }
    });
    let (p, age) = (platform.clone(), settings.retention.memory_versions);
    s.add("memory_version_retention", period, move || {
        let p = p.clone();
        async move { p.purge_memory_versions(age).await.map(|n| (n, "old memory versions removed")).map_err(|e| e.to_string()) }
    });
    let (p, age) = (platform.clone(), settings.retention.webhook_deliveries);
    s.add("webhook_delivery_retention", period, move || {
        let p = p.clone();
        async move { p.purge_webhook_deliveries(age).await.map(|n| (n, "old webhook deliveries removed")).map_err(|e| e.to_string()) }
    });
    s
}
