//! Logs (text or JSON) and the Prometheus recorder.

use crate::config::{LogConfig, LogFormat};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber once; later calls are no-ops (tests start
/// many servers in one process).
pub fn init_logs(cfg: &LogConfig) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        let _ = match cfg.format {
            LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
            LogFormat::Text => builder.compact().try_init(),
        };
    });
}

/// Installs the global metrics recorder once and returns the handle `/metrics`
/// renders from.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // A second recorder (another test server in this process) keeps the first.
            let _ = metrics::set_global_recorder(recorder);
            // Histograms keep every recorded sample until upkeep folds them
            // into buckets; without it a shop nobody scrapes grew by 8 bytes
            // per request (half a megabyte a second under load).
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}
