//! Minimal HTTP/1.1 client over one kept-alive TCP connection (hyper's `client::conn::http1`),
//! so the load generator controls exactly how many connections are open.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// The request every worker sends, parsed once.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved address of the server.
    pub addr: SocketAddr,
    /// `Host` header value (`host:port`).
    pub host: HeaderValue,
    /// Origin-form request target (`/path?query`).
    pub path: Uri,
    /// HTTP method.
    pub method: Method,
    /// Extra headers (`Authorization`, `Content-Type`, …).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Request body (empty for none).
    pub body: Bytes,
}

impl Target {
    /// Parses an `http://host:port/path` URL and `Name: value` header lines.
    ///
    /// Errors: a non-`http` scheme, a missing host, an unresolvable host, a malformed header.
    pub async fn new(url: &str, method: &str, headers: &[String], body: Bytes) -> Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("only http:// URLs are supported, got {url:?}");
        }
        let authority = uri.authority().ok_or_else(|| anyhow!("URL {url:?} has no host"))?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await
            .with_context(|| format!("resolving {}", authority.host()))?
            .next()
            .ok_or_else(|| anyhow!("{} resolves to no address", authority.host()))?;
        let path: Uri = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").parse()?;
        let mut parsed = Vec::new();
        let mut has_ct = false;
        for h in headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| anyhow!("header {:?} is not `Name: value`", redact(h)))?;
            let name: HeaderName = name.trim().parse().map_err(|_| anyhow!("bad header name in {:?}", redact(h)))?;
            let value: HeaderValue =
                value.trim().parse().map_err(|_| anyhow!("bad header value for {name}"))?;
            has_ct |= name == http::header::CONTENT_TYPE;
            parsed.push((name, value));
        }
        if !body.is_empty() && !has_ct {
            parsed.push((http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
        }
        Ok(Self {
            addr,
            host: HeaderValue::from_str(authority.as_str())?,
            path,
            method: method.parse().map_err(|_| anyhow!("bad method {method:?}"))?,
            headers: parsed,
            body,
        })
    }

    /// Builds one request.
    pub fn request(&self) -> Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(self.path.clone())
            .header(http::header::HOST, self.host.clone());
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        Ok(b.body(Full::new(self.body.clone()))?)
    }
}

/// Shows only a header's name, so a key given on the command line never reaches an error.
fn redact(h: &str) -> String {
    match h.split_once(':') {
        Some((n, _)) => format!("{n}: …"),
        None => "…".to_owned(),
    }
}

/// One HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Opens a TCP connection (`TCP_NODELAY`) and performs the HTTP/1.1 handshake.
    pub async fn open(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    /// Whether the connection can take another request (false once the peer closed it).
    pub fn is_usable(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request and returns the response head with its streaming body.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }
}
