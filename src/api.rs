//! The HTTP API (axum handlers on hyper and tokio, JSON). Endpoints,
//! bodies and errors are in README.md ("The API"). Bad input is a 4xx with
//! `{"error": "..."}`, never a crash.
//!
//! What a client may cost: the server accepts at most
//! `http.connections_max` connections at once and `connections_per_ip_max`
//! from one address; at the limit it stops accepting (new connections wait
//! in the kernel's backlog, holding no descriptor of ours) rather than fail
//! a storage file open. A connection that does not send a whole request
//! head within `header_timeout_ms` (an idle keep-alive one included) is
//! closed, and a request that takes longer than `request_timeout_ms` (a
//! slow body included) is answered 408. Submissions go through the node's
//! one bounded, niced verification queue (busy: 503 with `Retry-After`),
//! and one address may submit at most `txs_per_s_per_ip` transactions a
//! second (429 with `Retry-After`). Reads never touch the consensus engine:
//! they come from the driver's published view or from the `Db` through a
//! [`strata_consensus::db_chain::ChainReader`] (state and proofs from one
//! snapshot), on a small blocking pool.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use strata_consensus::block::Block;
use strata_consensus::state::user_key;
use strata_consensus::tx::{Transaction, TxKind, CONTRACT_KEY_BYTES_MAX};
use strata_consensus::wire::{Payload, TX_BATCH_MAX};
use strata_net::gossip::TokenBucket;

use crate::config::HttpSection;
use crate::node::{Shared, SubmitResult};

/// Largest request body, in bytes (a full batch of large transactions).
pub const BODY_BYTES_MAX: usize = 16 << 20;
/// Threads for the reads that touch storage (proofs, blocks, accounts):
/// enough to overlap a few, never hundreds.
const BLOCKING_THREADS_MAX: usize = 4;
/// How long a busy client is told to wait, in seconds.
const RETRY_AFTER_S: u64 = 1;
/// Client addresses whose submission budgets are remembered at once.
const SUBMITTERS_REMEMBERED_MAX: usize = 4096;

/// An error answer.
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, msg.into())
    }
    fn internal(msg: impl std::fmt::Display) -> ApiError {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg.to_string())
    }
    /// 410: the node pruned what was asked for (it existed).
    fn pruned(p: strata_consensus::history::PrunedBelow) -> ApiError {
        ApiError(StatusCode::GONE, p.to_string())
    }
    fn busy(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = matches!(
            self.0,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        );
        let mut r = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        r
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// What the handlers share: the node, and the API's own limits.
#[derive(Clone)]
pub struct ApiState {
    shared: Arc<Shared>,
    limits: HttpSection,
    /// Transactions each client address may still submit (token buckets).
    submitters: Arc<Mutex<strata_storage::lru::LruCache<IpAddr, TokenBucket>>>,
}

/// Runs `f` on the (small) blocking pool with the shared node state.
async fn blocking<T: Send + 'static>(
    s: &ApiState,
    f: impl FnOnce(&Shared) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let shared = Arc::clone(&s.shared);
    tokio::task::spawn_blocking(move || f(&shared))
        .await
        .map_err(ApiError::internal)?
}

fn hex32(what: &str, text: &str) -> Result<[u8; 32], ApiError> {
    crate::client::hex32(what, text).map_err(ApiError::bad)
}

/// The router.
pub fn router(shared: Arc<Shared>, limits: HttpSection) -> Router {
    let state = ApiState {
        shared,
        limits,
        submitters: Arc::new(Mutex::new(strata_storage::lru::LruCache::new(
            SUBMITTERS_REMEMBERED_MAX,
        ))),
    };
    Router::new()
        .route("/v1/txs", post(post_txs))
        .route("/v1/txs/{id}", get(get_tx))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/accounts/{pubkey}", get(account))
        .route("/v1/state/{key}", get(state_raw))
        .route("/v1/state/{owner}/{key}", get(state_user))
        .route("/v1/blocks/{block}", get(block))
        .route("/v1/blocks/{block}/ids", get(block_ids))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such route: {} (see README.md, \"The API\")",
        uri.path()
    ))
}

/// Answers 408 when a request (its body included) takes longer than
/// `request_timeout_ms`.
async fn request_timeout(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let limit = Duration::from_millis(s.limits.request_timeout_ms);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError(
            StatusCode::REQUEST_TIMEOUT,
            format!("request not done within {} ms", s.limits.request_timeout_ms),
        )
        .into_response(),
    }
}

/// Connections open per client address, and the release of one.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

impl PerIp {
    fn try_take(&self, ip: IpAddr, max: usize) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Serves the API on `addr` until the node's stop flag is set, within
/// `limits` (see the module docs).
///
/// # Errors
/// When the address cannot be bound.
pub fn serve(
    shared: Arc<Shared>,
    addr: SocketAddr,
    limits: HttpSection,
) -> Result<std::thread::JoinHandle<()>, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS_MAX)
        .thread_name("strata-api")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the API runtime: {e}"))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "cannot bind the API on {addr}: the address is in use \
                 (set another with --api or `api` in the config)"
            ),
            _ => format!("cannot bind the API on {addr}: {e}"),
        })?;
    tracing::info!(%addr, connections_max = limits.connections_max, "API listening");
    let app = router(Arc::clone(&shared), limits.clone());
    std::thread::Builder::new()
        .name("strata-api-main".into())
        .spawn(move || {
            runtime.block_on(accept_loop(shared, listener, app, limits));
            runtime.shutdown_timeout(Duration::from_secs(2));
        })
        .map_err(|e| e.to_string())
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpSection,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections_max));
    let per_ip = Arc::new(PerIp::default());
    let stopped = || shared.stop.load(Ordering::Acquire);
    let header_timeout = Duration::from_millis(limits.header_timeout_ms);
    while !stopped() {
        // At the limit, stop accepting: connections wait in the kernel's
        // backlog and cost this process no descriptor.
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or the like: back off, keep serving.
                    tracing::warn!("API accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
        };
        let ip = peer.ip();
        if !per_ip.try_take(ip, limits.connections_per_ip_max) {
            drop(stream);
            continue;
        }
        let per_ip = Arc::clone(&per_ip);
        let router = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let mut router = router.clone();
                    async move { tower::Service::call(&mut router, req).await }
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "API connection: {e}");
            }
            per_ip.release(ip);
            drop(permit);
        });
    }
}

/// Parses a `POST /v1/txs` body: JSON `{"txs": ["hex", ...]}`, binary
/// (`application/octet-stream`: the wire batch encoding of
/// docs/protocol.md), or hex text with one transaction per line.
fn parse_txs(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Transaction>, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let hexes: Vec<String> = if ctype.starts_with("application/octet-stream") {
        return match Payload::decode(body) {
            Ok(Payload::Txs(txs)) => Ok(txs),
            Ok(_) => Err(ApiError::bad("binary body is not a transaction batch")),
            Err(e) => Err(ApiError::bad(format!("binary body: {e}"))),
        };
    } else if ctype.starts_with("application/json") {
        #[derive(serde::Deserialize)]
        struct Body {
            txs: Vec<String>,
        }
        let b: Body = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad(format!("JSON body: {e} (expected {{\"txs\": [hex, ...]}})"))
        })?;
        b.txs
    } else {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::bad("body is not UTF-8 hex"))?;
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    if hexes.len() > TX_BATCH_MAX {
        return Err(ApiError::bad(format!(
            "{} transactions, over the batch limit of {TX_BATCH_MAX}",
            hexes.len()
        )));
    }
    hexes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let bytes = hex::decode(h).map_err(|_| ApiError::bad(format!("tx {i}: not hex")))?;
            Transaction::decode(&bytes).map_err(|e| ApiError::bad(format!("tx {i}: {e}")))
        })
        .collect()
}

/// Takes `n` transactions from `ip`'s submission budget.
fn charge_submitter(s: &ApiState, ip: IpAddr, n: usize) -> Result<(), ApiError> {
    let rate = s.limits.txs_per_s_per_ip;
    let now = s.shared.mono_ms();
    let mut m = s.submitters.lock().unwrap_or_else(|p| p.into_inner());
    if !m.contains(&ip) {
        m.put(ip, TokenBucket::new(rate, rate, now));
    }
    let bucket = m.get_mut(&ip).expect("just inserted");
    // A batch larger than a whole second's budget passes once the bucket
    // is full (it could never pass otherwise).
    if bucket.try_take((n as u64).min(rate), now) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("over {rate} transactions per second from this address; retry later"),
        ))
    }
}

async fn post_txs(
    State(s): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let txs = parse_txs(&headers, &body)?;
    charge_submitter(&s, peer.ip(), txs.len())?;
    // A module every node would refuse is refused here, with the reason,
    // rather than included to fail. Compiling is work: done after the
    // submitter paid for it, off the async threads.
    let txs = if txs
        .iter()
        .any(|t| matches!(t.body().kind, TxKind::Deploy { .. }))
    {
        blocking(&s, move |_| {
            for (i, t) in txs.iter().enumerate() {
                if let TxKind::Deploy { code, .. } = &t.body().kind {
                    strata_consensus::contract::check_code(code)
                        .map_err(|e| ApiError::bad(format!("tx {i}: module refused: {e}")))?;
                }
            }
            Ok(txs)
        })
        .await?
    } else {
        txs
    };
    submit_checked(&s, txs).await
}

/// Hands parsed, paid-for transactions to the node and reports each one.
async fn submit_checked(s: &ApiState, txs: Vec<Transaction>) -> ApiResult {
    let answer = s
        .shared
        .submit(txs)
        .map_err(|_| ApiError::busy("busy: the node's verification queue is full; retry later"))?;
    let results: Vec<SubmitResult> = answer
        .await
        .map_err(|_| ApiError::busy("the node is shutting down"))?;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let results: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(id) => json!({ "id": hex::encode(id) }),
            Err(e) => json!({ "error": e }),
        })
        .collect();
    Ok(Json(json!({ "accepted": accepted, "results": results })))
}

async fn get_tx(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let id = hex32("transaction id", &id)?;
    // One trip to the blocking pool: the index and, for a finalized
    // deploy or call, its receipt.
    let found = blocking(&s, move |s| {
        let Some(h) = s.chain.tx_height(&id).map_err(ApiError::internal)? else {
            return Ok(None);
        };
        let receipt = s.chain.receipt(&id).map_err(ApiError::internal)?;
        Ok(Some((h, receipt)))
    })
    .await?;
    if let Some((h, receipt)) = found {
        let Some(r) = receipt else {
            return Ok(Json(json!({ "status": "finalized", "height": h })));
        };
        return Ok(Json(json!({
            "status": "finalized",
            "height": h,
            "result": {
                "status": r.status.name(),
                "gas_used": r.gas_used,
                "contract": hex::encode(r.contract),
                "message": r.message,
                "return": hex::encode(&r.return_data),
                "events": r
                    .events
                    .iter()
                    .map(|(contract, data)| json!({
                        "contract": hex::encode(contract),
                        "data": hex::encode(data),
                    }))
                    .collect::<Vec<_>>(),
            },
        })));
    }
    let pending = s
        .shared
        .ask_pending(id)
        .map_err(|_| ApiError::busy("busy: the node has too many questions queued"))?
        .await
        .map_err(|_| ApiError::busy("the node is shutting down"))?;
    if let Some(waiting) = pending {
        return Ok(Json(
            json!({ "status": "pending", "waiting_for": waiting.to_string() }),
        ));
    }
    // Not pending and not in the index: never seen, expired, or finalized
    // below the history this node keeps, which it says.
    let floor = blocking(&s, |s| s.chain.history_floor().map_err(ApiError::internal)).await?;
    Ok(Json(if floor > 1 {
        json!({ "status": "unknown", "history_from": floor,
                "note": format!("this node keeps transactions finalized from height {floor} on") })
    } else {
        json!({ "status": "unknown" })
    }))
}

async fn status(State(s): State<ApiState>) -> ApiResult {
    let shared = &s.shared;
    let view = shared.view();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "chain_id": shared.genesis.chain_id,
        "node_key": hex::encode(shared.net.node_key()),
        "height": view.height,
        "block_id": hex::encode(view.block_id),
        "state_root": hex::encode(view.state_root),
        "peers": shared.net.peers().len(),
        "mempool_txs": view.mempool_txs,
        "halted": *shared.halted.lock().unwrap_or_else(|p| p.into_inner()),
        "uptime_s": shared.started.elapsed().as_secs(),
    })))
}

/// The connected peers: node key, address, direction and score (the
/// network layer's view, as its loop last published it).
async fn peers(State(s): State<ApiState>) -> ApiResult {
    let peers: Vec<Value> = s
        .shared
        .net
        .peers()
        .iter()
        .map(|p| {
            json!({
                "node_key": hex::encode(p.node_key),
                "addr": p.addr.to_string(),
                "outbound": p.outbound,
                "score": p.score,
            })
        })
        .collect();
    Ok(Json(json!({ "peers": peers })))
}

async fn account(State(s): State<ApiState>, Path(pk): Path<String>) -> ApiResult {
    let pk = hex32("public key", &pk)?;
    blocking(&s, move |s| {
        let (height, a) = s.chain.account(&pk).map_err(ApiError::internal)?;
        Ok(Json(json!({
            "public_key": hex::encode(pk),
            "balance": a.balance,
            "nonce": a.nonce,
            "height": height,
        })))
    })
    .await
}

fn prove(s: &Shared, state_key: [u8; 32]) -> ApiResult {
    let p = s.chain.prove(&state_key).map_err(ApiError::internal)?;
    Ok(Json(json!({
        "state_key": hex::encode(state_key),
        "value": p.value.map(hex::encode),
        "proof": hex::encode(p.proof.encode()),
        "root": hex::encode(p.root),
        "height": p.height,
    })))
}

async fn state_raw(State(s): State<ApiState>, Path(key): Path<String>) -> ApiResult {
    let key = hex32("state key", &key)?;
    blocking(&s, move |s| prove(s, key)).await
}

async fn state_user(
    State(s): State<ApiState>,
    Path((owner, key)): Path<(String, String)>,
) -> ApiResult {
    let owner = hex32("owner", &owner)?;
    let key = hex::decode(&key).map_err(|_| ApiError::bad("key: not hex"))?;
    // An account's keys are at most USER_KEY_BYTES_MAX, a contract's at
    // most CONTRACT_KEY_BYTES_MAX (the larger).
    if key.len() > CONTRACT_KEY_BYTES_MAX {
        return Err(ApiError::bad(format!(
            "key: {} bytes, over the limit of {CONTRACT_KEY_BYTES_MAX}",
            key.len()
        )));
    }
    let state_key = user_key(&owner, &key);
    blocking(&s, move |s| prove(s, state_key)).await
}

/// Lower-case hex of `bytes`. `hex::encode` collects `char`s one at a
/// time: in a saturated devnet that was 4.4 % of a node's CPU samples, all
/// from this endpoint's 4,096 transaction ids per block (which the bench
/// polls); writing the digits with `encode_to_slice` does the same work
/// without the per-char push.
fn hex_string(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut out).expect("output is twice the input");
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// A block as JSON.
pub fn block_json(b: &Block) -> Value {
    let h = b.header();
    json!({
        "height": h.height,
        "id": hex_string(b.id()),
        "parent": hex_string(&h.parent),
        "state_root": hex_string(&h.state_root),
        "proposer": hex_string(&h.proposer),
        "timestamp_ms": h.timestamp_ms,
        "txs": b.tx_ids().iter().map(|id| hex_string(id)).collect::<Vec<_>>(),
    })
}

/// The finalized block named by `which`: a height or a block id in hex.
async fn find_block(s: &ApiState, which: String) -> Result<Block, ApiError> {
    let by_height = which.parse::<u64>().ok();
    let by_id = if by_height.is_none() {
        Some(hex32("block (height or id)", &which)?)
    } else {
        None
    };
    blocking(s, move |s| {
        let height = match (by_height, by_id) {
            (Some(h), _) => h,
            (None, Some(id)) => match s.chain.block_height(&id).map_err(ApiError::internal)? {
                Some(h) => h,
                None => {
                    let floor = s.chain.history_floor().map_err(ApiError::internal)?;
                    return Err(ApiError::not_found(if floor > 1 {
                        format!(
                            "no finalized block with that id from height {floor} on \
                             (this node pruned the blocks below)"
                        )
                    } else {
                        "no finalized block with that id".to_string()
                    }));
                }
            },
            (None, None) => unreachable!("one of the two is set"),
        };
        let not_found = || ApiError::not_found(format!("no finalized block at height {height}"));
        if height == 0 {
            return Err(not_found());
        }
        match s
            .chain
            .read_header_and_ids(height)
            .map_err(ApiError::internal)?
        {
            Some(b) => Ok(b),
            None => {
                // Read after the block: a block pruned between the two
                // reads is reported pruned, not missing.
                let floor = s.chain.history_floor().map_err(ApiError::internal)?;
                if height < floor {
                    Err(ApiError::pruned(strata_consensus::history::PrunedBelow {
                        floor,
                    }))
                } else {
                    Err(not_found())
                }
            }
        }
    })
    .await
}

async fn block(State(s): State<ApiState>, Path(which): Path<String>) -> ApiResult {
    Ok(Json(block_json(&find_block(&s, which).await?)))
}

/// The block's transaction ids as raw bytes, 32 per id in block order
/// (`application/octet-stream`): what a client following finality at
/// high rates reads instead of a JSON array of hex strings (the bench
/// does; for 4,096 ids that is 128 KiB instead of 270 KiB of JSON to
/// build and parse).
async fn block_ids(
    State(s): State<ApiState>,
    Path(which): Path<String>,
) -> Result<Response, ApiError> {
    let b = find_block(&s, which).await?;
    let ids: Vec<u8> = b.tx_ids().iter().flatten().copied().collect();
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], ids).into_response())
}

async fn metrics(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let shared = &s.shared;
    let view = shared.view();
    let m = &shared.metrics;
    let e = view.engine;
    let n = shared.net.stats();
    let uptime = shared.started.elapsed().as_secs_f64().max(1e-9);
    let finalized = m.txs_finalized.load(Ordering::Relaxed);
    let mut out = String::new();
    let count = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    // Prometheus's info-metric convention: a constant 1 whose labels
    // carry the build (joins to any other series by instance).
    out.push_str(&format!(
        "# HELP strata_build_info The running build.\n# TYPE strata_build_info gauge\n\
         strata_build_info{{version=\"{}\",chain_id=\"{:#x}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        shared.genesis.chain_id
    ));
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        out.push_str(&format!(
            "# HELP strata_{name} {help}\n# TYPE strata_{name} {kind}\nstrata_{name} {value}\n"
        ));
    };
    metric(
        "height",
        "gauge",
        "Last finalized height.",
        view.height as f64,
    );
    metric(
        "txs_finalized_total",
        "counter",
        "Transactions finalized since start.",
        finalized as f64,
    );
    metric(
        "txs_finalized_per_second",
        "gauge",
        "Finalized transactions per second since start.",
        finalized as f64 / uptime,
    );
    metric(
        "txs_received_total",
        "counter",
        "Transactions received from clients and gossip.",
        count(&m.txs_received),
    );
    metric(
        "txs_admitted_total",
        "counter",
        "Transactions admitted to the mempool.",
        count(&m.txs_admitted),
    );
    metric(
        "blocks_finalized_total",
        "counter",
        "Blocks finalized since start.",
        count(&m.blocks_finalized),
    );
    metric(
        "mempool_txs",
        "gauge",
        "Transactions in the mempool.",
        view.mempool_txs as f64,
    );
    metric(
        "mempool_bytes",
        "gauge",
        "Bytes in the mempool.",
        view.mempool_bytes as f64,
    );
    metric(
        "peers",
        "gauge",
        "Connected peers.",
        shared.net.peers().len() as f64,
    );
    metric(
        "polls_total",
        "counter",
        "Snowball polls closed.",
        e.polls as f64,
    );
    metric(
        "polls_successful_total",
        "counter",
        "Snowball polls that reached alpha.",
        e.polls_successful as f64,
    );
    metric(
        "proposals_pushed_in_total",
        "counter",
        "Proposals taken as their proposers pushed them, without a pull.",
        e.pushes_taken as f64,
    );
    metric(
        "peer_rtt_median_ms",
        "gauge",
        "Median round trip to the validators polled, from query to answer.",
        e.rtt_median_ms as f64,
    );
    metric(
        "blocks_proposed_total",
        "counter",
        "Blocks this node proposed.",
        e.proposed as f64,
    );
    metric(
        "blocks_invalid_total",
        "counter",
        "Blocks that failed validation.",
        e.invalid_blocks as f64,
    );
    metric(
        "signatures_checked_total",
        "counter",
        "Transaction signatures checked (gossip, clients, pulled blocks).",
        shared.verified.checked() as f64,
    );
    metric(
        "signature_batches_total",
        "counter",
        "Batches of signatures checked (checked / batches = mean batch size).",
        shared.verified.batches() as f64,
    );
    metric(
        "signatures_skipped_total",
        "counter",
        "Transactions not checked again: already found valid.",
        shared.verified.skipped() as f64,
    );
    metric(
        "requests_busy_total",
        "counter",
        "Client batches answered busy: verification queue full.",
        count(&m.requests_busy),
    );
    metric(
        "api_busy_total",
        "counter",
        "API submissions answered 503: verification queue full.",
        count(&m.api_busy),
    );
    metric(
        "txs_shed_total",
        "counter",
        "Gossiped transactions dropped: verification queue full.",
        count(&m.txs_shed),
    );
    metric(
        "txs_unfunded_total",
        "counter",
        "Transactions refused before any signature check: the sender cannot pay.",
        count(&m.txs_unfunded),
    );
    metric(
        "payloads_undecodable_total",
        "counter",
        "Peer payloads that did not decode.",
        count(&m.payloads_undecodable),
    );
    metric(
        "txs_invalid_from_peers_total",
        "counter",
        "Transactions from peers and framed clients that did not verify (each sender banned).",
        count(&m.txs_invalid_from_peers),
    );
    metric(
        "peers_penalized_total",
        "counter",
        "Penalties the consensus engine gave peers.",
        count(&m.peers_penalized),
    );
    metric(
        "messages_over_budget_total",
        "counter",
        "Peer messages dropped: the peer's message budget was spent.",
        count(&m.messages_over_budget),
    );
    metric(
        "requests_over_budget_total",
        "counter",
        "Block pulls and old-height queries dropped: the peer's request budget was spent.",
        count(&m.requests_over_budget),
    );
    metric(
        "requests_over_node_budget_total",
        "counter",
        "Block pulls and old-height queries dropped unblamed: all peers together spent the node's request budget.",
        count(&m.requests_over_node_budget),
    );
    metric(
        "blocks_not_served_total",
        "counter",
        "Blocks asked for and not served: a byte budget was spent or the queue was full.",
        count(&m.blocks_not_served),
    );
    metric(
        "blocks_unsolicited_total",
        "counter",
        "Block data from peers it was not pulled from.",
        count(&m.blocks_unsolicited),
    );
    metric(
        "local_faults_total",
        "counter",
        "Failures of this node's own store while serving peers (never blamed on them).",
        count(&m.local_faults),
    );
    metric(
        "history_floor",
        "gauge",
        "Lowest height whose block and transactions this node keeps (1: nothing pruned).",
        m.history_floor.load(Ordering::Relaxed).max(1) as f64,
    );
    metric(
        "history_heights_pruned_total",
        "counter",
        "Heights whose block and transactions were pruned since start.",
        count(&m.history_heights_pruned),
    );
    metric(
        "history_txs_pruned_total",
        "counter",
        "Transaction index entries pruned since start.",
        count(&m.history_txs_pruned),
    );
    metric(
        "history_prune_failures_total",
        "counter",
        "Times pruning stopped on a storage failure (the node then keeps all history).",
        count(&m.history_prune_failures),
    );
    metric(
        "net_bytes_in_total",
        "counter",
        "Bytes received.",
        count(&n.bytes_in),
    );
    metric(
        "net_bytes_out_total",
        "counter",
        "Bytes sent.",
        count(&n.bytes_out),
    );
    metric(
        "net_peers_dropped_total",
        "counter",
        "Peers dropped for misbehaviour.",
        count(&n.peers_dropped),
    );
    metric("net_bans_total", "counter", "Bans issued.", count(&n.bans));
    metric(
        "net_accepts_refused_total",
        "counter",
        "Inbound connections refused at accept (handshake limits, banned IP).",
        count(&n.accepts_refused),
    );
    metric(
        "net_peers_evicted_total",
        "counter",
        "Misbehaving inbound peers evicted for a newcomer.",
        count(&n.peers_evicted),
    );
    metric(
        "net_items_rate_limited_total",
        "counter",
        "Gossip items dropped: the sending peer's push budget was spent.",
        count(&n.items_rate_limited),
    );
    metric(
        "net_items_shed_total",
        "counter",
        "Gossip items shed: their lane of the event queue was full (votes and requests have their own).",
        count(&n.items_shed),
    );
    metric(
        "net_stranger_items_dropped_total",
        "counter",
        "Gossip items from non-validators dropped unhashed: strangers together spent their shared budget.",
        count(&n.stranger_items_dropped),
    );
    metric(
        "net_events_dropped_total",
        "counter",
        "Network events other than gossip items dropped: the node fell a whole queue behind.",
        count(&n.events_dropped),
    );
    metric(
        "net_handshakes_refused_total",
        "counter",
        "Handshakes refused.",
        count(&n.handshakes_refused),
    );
    let st = shared.db.stats();
    let files: usize = st.levels.iter().map(|l| l.files).sum();
    let bytes: u64 = st.levels.iter().map(|l| l.bytes).sum();
    let l0 = st.levels.first().map_or(0, |l| l.files);
    metric(
        "storage_tables",
        "gauge",
        "Sorted tables on disk.",
        files as f64,
    );
    metric(
        "storage_l0_tables",
        "gauge",
        "Tables in level 0.",
        l0 as f64,
    );
    metric(
        "storage_table_bytes",
        "gauge",
        "Bytes of sorted tables.",
        bytes as f64,
    );
    metric(
        "storage_write_amplification",
        "gauge",
        "(flush + compaction bytes) / user bytes since open.",
        st.write_amplification,
    );
    metric(
        "storage_compactions_total",
        "counter",
        "Compactions since open.",
        st.compactions as f64,
    );
    metric(
        "storage_write_stalls_total",
        "counter",
        "Writes that waited for a background worker.",
        st.write_stalls as f64,
    );
    metric(
        "storage_block_cache_hits_total",
        "counter",
        "Block cache hits.",
        st.block_cache_hits as f64,
    );
    metric(
        "storage_block_cache_misses_total",
        "counter",
        "Block cache misses.",
        st.block_cache_misses as f64,
    );
    // Per level: where the disk goes (a deep level far over the live data
    // is versions and deletes compaction has not reached yet).
    type LevelField = fn(&strata_storage::LevelStats) -> u64;
    let per_level: [(&str, &str, LevelField); 3] = [
        ("bytes", "Bytes of sorted tables per level.", |l| l.bytes),
        (
            "entries",
            "Entries (versions and tombstones) per level.",
            |l| l.entries,
        ),
        (
            "deletions",
            "Tombstones per level: deletes waiting to meet what they delete.",
            |l| l.deletions,
        ),
    ];
    for (name, help, field) in per_level {
        out.push_str(&format!(
            "# HELP strata_storage_level_{name} {help}\n# TYPE strata_storage_level_{name} gauge\n"
        ));
        for (level, l) in st.levels.iter().enumerate() {
            out.push_str(&format!(
                "strata_storage_level_{name}{{level=\"{level}\"}} {}\n",
                field(l)
            ));
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

#[cfg(test)]
mod tests {
    use super::hex_string;

    #[test]
    fn hex_string_matches_hex_encode() {
        let bytes: Vec<u8> = (0..=255u8).chain([0, 0x0f, 0xf0, 0xff]).collect();
        assert_eq!(hex_string(&bytes), hex::encode(&bytes));
        assert_eq!(hex_string(&[]), "");
    }
}
