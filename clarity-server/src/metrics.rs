//! Prometheus metrics (`GET /metrics`, text exposition via prometheus-client).
//! Labels are route templates, methods, status codes and alert kinds only:
//! never a path, an id or any value from a request.

use std::sync::Mutex;
use std::time::Duration;

use clarity_core::Clarity;
use clarity_core::timings::{Stage, StageTimes};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// An audit sink, by its configured name (a fixed set the operator chose).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

/// The core's stage latency histograms as one family,
/// `stage_duration_seconds{stage="…"}`: the core owns and fills them, so
/// they are encoded from there on each scrape.
#[derive(Debug)]
struct StageCollector(StageTimes);

impl Collector for StageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut family = encoder.encode_descriptor(
            "stage_duration_seconds",
            "Time spent in each stage of serving requests: authenticate, authorize, row_read, data_key, audit_wait (per request), audit_commit (per audit batch)",
            None,
            MetricType::Histogram,
        )?;
        for stage in Stage::ALL {
            let labels = StageLabels {
                stage: stage.as_str(),
            };
            self.0
                .histogram(stage)
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// A fixed label per method: clients choose methods, and each new label
/// value would be a new series kept forever.
fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// The server's metrics.
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    auth_failures: Counter,
    throttled: Counter,
    password_verifications: Gauge,
    token_cache_hits: Gauge,
    token_cache_misses: Gauge,
    token_cache_entries: Gauge,
    audit_queue_depth: Gauge,
    audit_events: Gauge,
    audit_batches: Gauge,
    audit_commit_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    verification: VerificationGauges,
    alerts: Family<KindLabels, Gauge>,
    pool_in_use: Gauge,
    pool_size: Gauge,
    cache: CacheGauges,
    oidc: OidcGauges,
    sinks: SinkGauges,
    key_access: KeyAccessGauges,
}

/// Audit sinks (S-AUD-8), per sink.
struct SinkGauges {
    delivered: Family<SinkLabels, Gauge>,
    failures: Family<SinkLabels, Gauge>,
    gaps: Family<SinkLabels, Gauge>,
    pending: Family<SinkLabels, Gauge>,
    oldest_pending: Family<SinkLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    delivering: Family<SinkLabels, Gauge>,
    blocking: Family<SinkLabels, Gauge>,
    last_delivery: Family<SinkLabels, Gauge>,
}

/// Verifications of the whole audit trail (S-AUD-7).
struct VerificationGauges {
    runs: Gauge,
    failed: Gauge,
    ok: Gauge,
    last: Gauge,
}

/// Identity-provider tokens (S-ID-1).
struct OidcGauges {
    verified: Gauge,
    refused: Family<KindLabels, Gauge>,
    jwks_refreshes: Gauge,
    jwks_refresh_failures: Gauge,
}

/// The key provider's access to its key service (S-KEY-4).
struct KeyAccessGauges {
    logins: Gauge,
    renewals: Gauge,
    failures: Gauge,
    healthy: Gauge,
    expires_in: Gauge,
}

/// The cache, its invalidation channel and the rate limits.
struct CacheGauges {
    hits: Gauge,
    misses: Gauge,
    entries: Gauge,
    channel_up: Gauge,
    invalidations_sent: Gauge,
    invalidations_received: Gauge,
    rate_limiter_healthy: Gauge,
    rate_limited: Family<KindLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// The server's metrics, with the core's stage histograms `times`.
    pub(crate) fn new(times: &StageTimes) -> Self {
        let mut registry = Registry::with_prefix("clarity");
        registry.register_collector(Box::new(StageCollector(times.clone())));
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "http_auth_failures",
            "Requests answered 401",
            auth_failures.clone(),
        );
        let throttled = Counter::default();
        registry.register("http_throttled", "Requests answered 429", throttled.clone());
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let password_verifications = gauge(
            &mut registry,
            "password_verifications",
            "Password verifications (argon2id) so far",
        );
        let token_cache_hits = gauge(
            &mut registry,
            "token_cache_hits",
            "Access tokens found in the verified-token cache",
        );
        let token_cache_misses = gauge(
            &mut registry,
            "token_cache_misses",
            "Access tokens verified cryptographically",
        );
        let token_cache_entries = gauge(
            &mut registry,
            "token_cache_entries",
            "Verified tokens cached now",
        );
        let audit_queue_depth = gauge(
            &mut registry,
            "audit_queue_depth",
            "Audit events waiting to be written",
        );
        let audit_events = gauge(
            &mut registry,
            "audit_events_written",
            "Audit events written by this instance",
        );
        let audit_batches = gauge(
            &mut registry,
            "audit_batches_committed",
            "Audit transactions committed by this instance",
        );
        let audit_commit_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "audit_commit_seconds_total",
            "Time spent committing audit batches",
            audit_commit_seconds.clone(),
        );
        let verification = VerificationGauges {
            runs: gauge(
                &mut registry,
                "audit_verifications",
                "Verifications of the whole audit trail by this instance (scheduled and asked for)",
            ),
            failed: gauge(
                &mut registry,
                "audit_verifications_failed",
                "Verifications of the audit trail that found a problem or could not run",
            ),
            ok: gauge(
                &mut registry,
                "audit_verify_ok",
                "1 when the last verification of the audit trail found it whole, 0 when not, -1 before the first",
            ),
            last: gauge(
                &mut registry,
                "audit_verify_last_timestamp_seconds",
                "When the last verification of the audit trail finished (0: never)",
            ),
        };
        let pool_in_use = gauge(
            &mut registry,
            "db_pool_connections_in_use",
            "Database connections in use",
        );
        let pool_size = gauge(
            &mut registry,
            "db_pool_connections_max",
            "Database pool size",
        );
        let alerts = Family::<KindLabels, Gauge>::default();
        registry.register(
            "security_alerts",
            "Security alerts raised, by kind",
            alerts.clone(),
        );
        let cache = CacheGauges {
            hits: gauge(
                &mut registry,
                "cache_hits",
                "Reads of sessions, users, care teams, grants and encrypted documents answered from the cache",
            ),
            misses: gauge(
                &mut registry,
                "cache_misses",
                "Reads of cacheable state that went to the database",
            ),
            entries: gauge(
                &mut registry,
                "cache_entries",
                "Entries in this instance's cache",
            ),
            channel_up: gauge(
                &mut registry,
                "cache_invalidation_channel_up",
                "1 while the invalidation channel to other instances is connected (or none is needed); 0: state is read from the database",
            ),
            invalidations_sent: gauge(
                &mut registry,
                "cache_invalidations_sent",
                "Invalidations announced to other instances",
            ),
            invalidations_received: gauge(
                &mut registry,
                "cache_invalidations_received",
                "Invalidations received from other instances",
            ),
            rate_limiter_healthy: gauge(
                &mut registry,
                "rate_limiter_healthy",
                "1 while rate limits work as configured; 0: shared limits fell back to per-instance ones",
            ),
            rate_limited: Family::<KindLabels, Gauge>::default(),
        };
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by route class",
            cache.rate_limited.clone(),
        );
        let oidc = OidcGauges {
            verified: gauge(
                &mut registry,
                "oidc_tokens_verified",
                "Identity-provider access tokens verified",
            ),
            refused: Family::<KindLabels, Gauge>::default(),
            jwks_refreshes: gauge(
                &mut registry,
                "oidc_jwks_refreshes",
                "Identity-provider key sets (JWKS) fetched",
            ),
            jwks_refresh_failures: gauge(
                &mut registry,
                "oidc_jwks_refresh_failures",
                "Identity-provider key set fetches that failed (cached keys stay in use)",
            ),
        };
        registry.register(
            "oidc_tokens_refused",
            "Identity-provider tokens refused, by reason",
            oidc.refused.clone(),
        );
        let sinks = SinkGauges {
            delivered: Family::default(),
            failures: Family::default(),
            gaps: Family::default(),
            pending: Family::default(),
            oldest_pending: Family::default(),
            delivering: Family::default(),
            blocking: Family::default(),
            last_delivery: Family::default(),
        };
        registry.register(
            "audit_sink_delivered",
            "Audit events this instance delivered to the sink",
            sinks.delivered.clone(),
        );
        registry.register(
            "audit_sink_failures",
            "Deliveries to the sink by this instance that failed (retried)",
            sinks.failures.clone(),
        );
        registry.register(
            "audit_sink_gaps",
            "Times events were missing from the store before the sink received them",
            sinks.gaps.clone(),
        );
        registry.register(
            "audit_sink_pending_events",
            "Audit events written but not yet delivered to the sink",
            sinks.pending.clone(),
        );
        registry.register(
            "audit_sink_oldest_pending_seconds",
            "Age of the oldest audit event not yet delivered to the sink (0: none)",
            sinks.oldest_pending.clone(),
        );
        registry.register(
            "audit_sink_delivering",
            "1 while this instance holds the sink's delivery lease",
            sinks.delivering.clone(),
        );
        registry.register(
            "audit_sink_blocking",
            "1 while a fail-closed sink is too far behind and audited operations are refused",
            sinks.blocking.clone(),
        );
        registry.register(
            "audit_sink_last_delivery_timestamp_seconds",
            "When this instance last delivered to the sink (0: never)",
            sinks.last_delivery.clone(),
        );
        let key_access = KeyAccessGauges {
            logins: gauge(
                &mut registry,
                "key_provider_logins",
                "Logins of the key provider to its key service (OpenBao / Vault)",
            ),
            renewals: gauge(
                &mut registry,
                "key_provider_token_renewals",
                "Renewals of the key provider's token",
            ),
            failures: gauge(
                &mut registry,
                "key_provider_access_failures",
                "Renewals and logins of the key provider that failed (each raises a KeyAccessFailing alert)",
            ),
            healthy: gauge(
                &mut registry,
                "key_provider_access_healthy",
                "1 while the key provider's last renewal or login succeeded",
            ),
            expires_in: gauge(
                &mut registry,
                "key_provider_token_expires_in_seconds",
                "Seconds until the key provider's token expires (0 when it never does)",
            ),
        };
        Metrics {
            key_access,
            sinks,
            oidc,
            registry: Mutex::new(registry),
            requests,
            latency,
            auth_failures,
            throttled,
            password_verifications,
            token_cache_hits,
            token_cache_misses,
            token_cache_entries,
            audit_queue_depth,
            audit_events,
            audit_batches,
            audit_commit_seconds,
            verification,
            alerts,
            pool_in_use,
            pool_size,
            cache,
        }
    }

    /// Counts one answered request.
    pub(crate) fn request(
        &self,
        route: &'static str,
        method: &http::Method,
        status: u16,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method: method_label(method),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
        match status {
            401 => {
                self.auth_failures.inc();
            }
            429 => {
                self.throttled.inc();
            }
            _ => {}
        }
    }

    /// The exposition text, with the core's counters read now.
    pub(crate) fn render(&self, clarity: &Clarity) -> String {
        let stats = clarity.stats();
        let set = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.password_verifications, stats.password_verifications);
        set(&self.token_cache_hits, stats.token_cache_hits);
        set(&self.token_cache_misses, stats.token_cache_misses);
        set(&self.token_cache_entries, stats.token_cache_entries);
        set(&self.audit_queue_depth, stats.audit_queue_depth);
        set(&self.audit_events, stats.audit_events_written);
        set(&self.audit_batches, stats.audit_batches);
        set(&self.verification.runs, stats.audit_verifications);
        set(&self.verification.failed, stats.audit_verifications_failed);
        self.verification
            .ok
            .set(match stats.audit_last_verification_ok {
                None => -1,
                Some(ok) => i64::from(ok),
            });
        self.verification
            .last
            .set(stats.audit_last_verification_unix);
        set(&self.pool_in_use, stats.pool_in_use);
        set(&self.pool_size, stats.pool_size);
        self.audit_commit_seconds
            .set(stats.audit_commit_micros as f64 / 1_000_000.0);
        set(&self.cache.hits, stats.cache_hits);
        set(&self.cache.misses, stats.cache_misses);
        set(&self.cache.entries, stats.cache_entries);
        set(&self.cache.channel_up, u64::from(stats.caching.channel.up));
        set(
            &self.cache.invalidations_sent,
            stats.caching.channel.announced,
        );
        set(
            &self.cache.invalidations_received,
            stats.caching.channel.received,
        );
        set(
            &self.cache.rate_limiter_healthy,
            u64::from(stats.caching.rate_limiter_healthy),
        );
        for (class, count) in stats.rate_limited {
            let labels = KindLabels {
                kind: class.as_str().to_string(),
            };
            set(&self.cache.rate_limited.get_or_create(&labels), count);
        }
        for sink in clarity.audit_sinks() {
            let labels = SinkLabels {
                sink: sink.name.clone(),
            };
            let g = &self.sinks;
            set(&g.delivered.get_or_create(&labels), sink.delivered);
            set(&g.failures.get_or_create(&labels), sink.failures);
            set(&g.gaps.get_or_create(&labels), sink.gaps);
            set(&g.pending.get_or_create(&labels), sink.pending);
            g.oldest_pending
                .get_or_create(&labels)
                .set(sink.oldest_pending_secs);
            set(
                &g.delivering.get_or_create(&labels),
                u64::from(sink.delivering),
            );
            set(&g.blocking.get_or_create(&labels), u64::from(sink.blocking));
            g.last_delivery
                .get_or_create(&labels)
                .set(sink.last_delivery_unix);
        }
        set(&self.oidc.verified, stats.oidc.verified);
        set(&self.oidc.jwks_refreshes, stats.oidc.jwks_refreshes);
        set(
            &self.oidc.jwks_refresh_failures,
            stats.oidc.jwks_refresh_failures,
        );
        for (reason, count) in &stats.oidc.refused {
            let labels = KindLabels {
                kind: reason.as_str().to_string(),
            };
            set(&self.oidc.refused.get_or_create(&labels), *count);
        }
        if let Some(access) = &stats.key_access {
            set(&self.key_access.logins, access.logins);
            set(&self.key_access.renewals, access.renewals);
            set(&self.key_access.failures, access.failures);
            set(&self.key_access.healthy, u64::from(access.healthy));
            set(
                &self.key_access.expires_in,
                access.expires_in_secs.unwrap_or_default(),
            );
        }
        for (kind, count) in stats.alerts {
            let labels = KindLabels {
                kind: format!("{kind:?}"),
            };
            set(&self.alerts.get_or_create(&labels), count);
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}
