//! The mock server: builder, handle, router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use gatehouse_types::Usage;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::respond::{self, Dialect};
use crate::scenario::Scenario;
use crate::state::{MockState, RecordedRequest};
use crate::{anthropic, azure, bedrock, gemini, ollama, openai};

/// Largest request body the mock reads (Anthropic's edge limit, `wire-formats.md` §2.7).
pub const BODY_LIMIT_BYTES: usize = 32 * 1024 * 1024;

/// Configures a [`MockProvider`] before it starts.
///
/// Defaults: listen on `127.0.0.1:0`, accept any key, default scenario = echo.
#[derive(Clone)]
pub struct MockProviderBuilder {
    listen: SocketAddr,
    expected_key: Option<String>,
    defaults: Scenario,
}

impl std::fmt::Debug for MockProviderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockProviderBuilder")
            .field("listen", &self.listen)
            .field(
                "expected_key",
                &self.expected_key.as_ref().map(|_| "<redacted>"),
            )
            .field("defaults", &self.defaults)
            .finish()
    }
}

impl Default for MockProviderBuilder {
    fn default() -> Self {
        MockProviderBuilder {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            expected_key: None,
            defaults: Scenario::default(),
        }
    }
}

impl MockProviderBuilder {
    /// Requires this API key: OpenAI routes want `Authorization: Bearer <key>`, Anthropic
    /// routes `x-api-key: <key>` (or Bearer). A missing or wrong key gets the vendor's 401
    /// envelope. Without this call any key, or none, is accepted.
    pub fn expected_key(mut self, key: impl Into<String>) -> Self {
        self.expected_key = Some(key.into());
        self
    }

    /// Address to bind (default `127.0.0.1:0`, an ephemeral port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The scenario every request starts from, before the model name's and the
    /// `x-mock-scenario` header's options (e.g. `Scenario::from_options("chunks=20,delay_ms=5")`
    /// for a benchmark).
    pub fn scenario(mut self, defaults: Scenario) -> Self {
        self.defaults = defaults;
        self
    }

    /// Binds the listener and serves in a background tokio task.
    ///
    /// # Errors
    /// The bind error (address in use, permission denied, …).
    pub async fn start(self) -> std::io::Result<MockProvider> {
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(MockState::new(self.expected_key, self.defaults));
        let app = router(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "gatehouse-mock server stopped with an error");
            }
        });
        tracing::debug!(%addr, "gatehouse-mock listening");
        Ok(MockProvider {
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running mock of the OpenAI and Anthropic APIs (see the crate docs for endpoints and the
/// scenario convention). Dropping the handle stops accepting connections (graceful: streams
/// in flight finish); [`MockProvider::shutdown`] also waits for the server task.
pub struct MockProvider {
    addr: SocketAddr,
    state: Arc<MockState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockProvider")
            .field("addr", &self.addr)
            .field("calls", &self.calls())
            .finish()
    }
}

impl MockProvider {
    /// A builder with the defaults (`127.0.0.1:0`, any key, echo).
    pub fn builder() -> MockProviderBuilder {
        MockProviderBuilder::default()
    }

    /// Starts a mock with the defaults. Same as `MockProvider::builder().start().await`.
    ///
    /// # Errors
    /// The bind error.
    pub async fn start() -> std::io::Result<MockProvider> {
        MockProviderBuilder::default().start().await
    }

    /// The bound address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Base URL for OpenAI clients: `http://127.0.0.1:PORT/v1`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Base URL for Anthropic clients: `http://127.0.0.1:PORT` (they append `/v1/messages`).
    pub fn anthropic_base_url(&self) -> String {
        self.base_url()
    }

    /// Base URL for Gemini clients: `http://127.0.0.1:PORT` (they append
    /// `/v1beta/models/{model}:generateContent`).
    pub fn gemini_base_url(&self) -> String {
        self.base_url()
    }

    /// Base URL for Ollama clients: `http://127.0.0.1:PORT` (they append `/api/chat`).
    pub fn ollama_base_url(&self) -> String {
        self.base_url()
    }

    /// Bedrock Runtime endpoint: `http://127.0.0.1:PORT` (clients append
    /// `/model/{modelId}/converse[-stream]`).
    pub fn bedrock_base_url(&self) -> String {
        self.base_url()
    }

    /// Azure resource endpoint: `http://127.0.0.1:PORT` (clients append
    /// `/openai/deployments/{deployment}/chat/completions?api-version=…`); the `/openai/v1` form
    /// is `{azure_base_url}/openai/v1`.
    pub fn azure_base_url(&self) -> String {
        self.base_url()
    }

    /// Requests received on any route since start (or [`MockProvider::reset`]), including
    /// rejected ones (bad key, bad JSON, scripted failures).
    pub fn calls(&self) -> usize {
        self.state.calls()
    }

    /// Requests received on exactly this path, e.g. `"/v1/chat/completions"`,
    /// `"/v1/messages"`, `"/v1/embeddings"`, `"/v1/models"`.
    pub fn calls_for(&self, path: &str) -> usize {
        self.state.calls_for(path)
    }

    /// The last JSON body received (on any route), if any body parsed as JSON.
    pub fn last_request(&self) -> Option<Value> {
        self.state.last_request()
    }

    /// The headers of the last request received (they include the presented key).
    pub fn last_headers(&self) -> Option<HeaderMap> {
        self.state.last_headers()
    }

    /// The last [`crate::state::RECORDED_REQUESTS`] requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// Usage the mock reported in its last successful chat/messages/embeddings answer,
    /// normalised like the gateway does (`prompt_tokens` includes cached and cache-write
    /// tokens). Set before the body is streamed.
    pub fn last_usage(&self) -> Option<Usage> {
        self.state.last_usage()
    }

    /// Responses the client abandoned: a streamed body dropped before its last byte, or a
    /// request dropped while the mock was still waiting (`wait_ms`). Scripted failures
    /// (`early-close`, …) do not count.
    pub fn disconnects(&self) -> usize {
        self.state.disconnects()
    }

    /// Polls [`MockProvider::disconnects`] every 10 ms until it reaches `n`; returns whether it
    /// did within `within`. Disconnects are noticed on the next write, so a slow stream
    /// (`delay_ms`) is needed for a prompt answer.
    pub async fn wait_for_disconnects(&self, n: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.disconnects() >= n {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Zeroes the counters and forgets recorded requests, usage and `fail_first` counts.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops accepting, lets in-flight responses finish (at most 5 s), then returns.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The mock's routes, sharing `state`.
pub(crate) fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{id}", get(openai::get_model).post(gemini::generate))
        .route("/v1beta/models/{id}", post(gemini::generate))
        .route("/v1/messages", post(anthropic::messages))
        .route("/api/chat", post(ollama::chat))
        .route("/model/{model}/converse", post(bedrock::converse))
        .route("/model/{model}/converse-stream", post(bedrock::converse_stream))
        .route("/openai/deployments/{deployment}/chat/completions", post(azure::deployment_chat))
        .route("/openai/v1/chat/completions", post(azure::v1_chat))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(state)
}

async fn not_found(
    axum::extract::State(st): axum::extract::State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    st.record(method.clone(), uri.path(), &headers, None);
    let d = Dialect::sniff(&headers);
    let msg = format!("Invalid URL ({method} {})", uri.path());
    respond::error(d, 404, Some(&msg), None, &Scenario::default())
}

async fn method_not_allowed(
    axum::extract::State(st): axum::extract::State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    st.record(method.clone(), uri.path(), &headers, None);
    let d = Dialect::sniff(&headers);
    let msg = format!("Method {method} is not allowed on {}", uri.path());
    respond::error(d, 405, Some(&msg), None, &Scenario::default())
}
