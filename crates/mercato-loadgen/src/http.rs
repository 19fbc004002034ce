//! One keep-alive HTTP/1.1 connection, driven by hyper's low-level client.
//!
//! Each load task owns one `Conn`: no pool, no lock, no shared state. A broken
//! connection is re-opened on the next request (and the failure counted by the
//! caller), like wrk does.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use tokio::net::TcpStream;

/// Where the server is: address to connect to, Host header, and path prefix.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    /// Base path without the trailing slash ("" for a server at the root).
    pub prefix: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("only http:// URLs are supported (got {url:?})");
        }
        let authority = uri.authority().ok_or_else(|| anyhow!("URL {url:?} has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(authority.host(), port))
            .with_context(|| format!("cannot resolve {}", authority.host()))?
            .next()
            .ok_or_else(|| anyhow!("{} resolves to no address", authority.host()))?;
        let host = HeaderValue::from_str(authority.as_str())?;
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(Target { addr, host, prefix })
    }

    /// A request-target (path and query) under the base URL.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri> {
        let s = format!("{}{}", self.prefix, path_and_query);
        s.parse().with_context(|| format!("bad path {s:?}"))
    }
}

/// A request prepared before the window: cloning `Uri`, `Bytes` and
/// `HeaderValue` only bumps reference counts.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub method: Method,
    pub uri: Uri,
    pub body: Bytes,
}

impl Prepared {
    pub fn get(uri: Uri) -> Self {
        Prepared { method: Method::GET, uri, body: Bytes::new() }
    }
}

/// A live connection. Its `Connection` future is polled by the task that
/// sends (together with the request, in one `select!`), not by a task of its
/// own: no cross-task wake-up per request.
struct Live {
    sender: SendRequest<Full<Bytes>>,
    conn: Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
}

pub struct Conn {
    target: Target,
    live: Option<Live>,
}

/// What a request returned: the status and, if asked for, the body.
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Conn {
    pub fn new(target: Target) -> Self {
        Conn { target, live: None }
    }

    async fn connect(&mut self) -> Result<&mut Live> {
        if self.live.as_ref().is_none_or(|l| l.sender.is_closed()) {
            let stream = TcpStream::connect(self.target.addr).await.context("connect")?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            self.live = Some(Live { sender, conn: Box::pin(conn) });
        }
        Ok(self.live.as_mut().expect("just connected"))
    }

    /// Sends one request. `keep_body` collects the body; otherwise it is read
    /// and dropped frame by frame (it must be read for keep-alive).
    pub async fn send(
        &mut self,
        p: &Prepared,
        auth: Option<&HeaderValue>,
        idempotency_key: Option<HeaderValue>,
        keep_body: bool,
    ) -> Result<Reply> {
        let host = self.target.host.clone();
        let result = async {
            let Live { sender, conn } = self.connect().await?;
            let mut req = Request::new(Full::new(p.body.clone()));
            *req.method_mut() = p.method.clone();
            *req.uri_mut() = p.uri.clone();
            let h = req.headers_mut();
            h.insert(HOST, host);
            if !p.body.is_empty() {
                h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            if let Some(a) = auth {
                h.insert(AUTHORIZATION, a.clone());
            }
            if let Some(k) = idempotency_key {
                h.insert("idempotency-key", k);
            }
            let exchange = async {
                sender.ready().await.context("connection not ready")?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                let mut body = resp.into_body();
                let body = if keep_body {
                    body.collect().await?.to_bytes()
                } else {
                    while let Some(frame) = body.frame().await {
                        frame?;
                    }
                    Bytes::new()
                };
                Ok::<_, anyhow::Error>(Reply { status, body })
            };
            tokio::select! {
                biased;
                r = exchange => r,
                c = conn.as_mut() => match c {
                    Ok(()) => Err(anyhow!("connection closed by the server")),
                    Err(e) => Err(anyhow::Error::new(e).context("connection failed")),
                },
            }
        }
        .await;
        if result.is_err() {
            self.live = None; // reconnect next time
        }
        result
    }

    /// Convenience for setup code: JSON in, status and JSON out.
    pub async fn json(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        auth: Option<&HeaderValue>,
    ) -> Result<(StatusCode, serde_json::Value)> {
        let p = Prepared {
            method,
            uri: self.target.uri(path)?,
            body: body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
        };
        let reply = self.send(&p, auth, None, true).await?;
        let v = if reply.body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null)
        };
        Ok((reply.status, v))
    }
}

pub fn bearer(token: &str) -> Result<HeaderValue> {
    Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
}
