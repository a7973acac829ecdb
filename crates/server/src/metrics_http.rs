//! `GET /metrics` on the admin listener (issue 6): Prometheus text exposition (format 0.0.4)
//! rendered by `metrics-exporter-prometheus` from the process-wide `metrics` recorder, which is
//! installed once on first use (the exporter's own HTTP listener is compiled out; this route
//! serves it). Before each render the gateway's routing gauges are refreshed. Unauthenticated
//! like `/healthz`: the admin listener is meant for the operator network, and no metric carries
//! a secret or client input (labels: `gatehouse_gateway::metrics` module doc).

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatehouse_gateway::MetricsExporter;
use axum::http::{HeaderValue, StatusCode, header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The recorder's handle, installing the recorder on first call; `None` if another recorder
/// was installed first (logged once).
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::error!(error = %e, "cannot install the Prometheus recorder; /metrics is disabled");
                None
            }
        })
        .clone()
}

#[derive(Clone)]
struct MetricsState {
    handle: Option<PrometheusHandle>,
    exporter: MetricsExporter,
}

/// The `/metrics` route.
pub fn routes(exporter: MetricsExporter) -> Router {
    Router::new().route("/metrics", get(render)).with_state(MetricsState { handle: handle(), exporter })
}

async fn render(State(s): State<MetricsState>) -> Response {
    let Some(handle) = s.handle else {
        return (StatusCode::SERVICE_UNAVAILABLE, "metrics are not available in this process\n").into_response();
    };
    s.exporter.refresh().await;
    handle.run_upkeep();
    let mut resp = handle.render().into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}
