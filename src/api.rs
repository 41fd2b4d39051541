//! The HTTP API (axum on tokio, JSON). Endpoints, bodies and errors are in
//! README.md ("The API"). Every handler that reads the chain locks the
//! node's core inside `spawn_blocking`, so a commit in progress never
//! stalls the runtime's threads. Bad input is a 4xx with
//! `{"error": "..."}`, never a crash.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use strata_consensus::block::Block;
use strata_consensus::engine::Chain;
use strata_consensus::state::user_key;
use strata_consensus::tx::{Transaction, USER_KEY_BYTES_MAX};
use strata_consensus::wire::{Payload, TX_BATCH_MAX};

use crate::node::Shared;

/// Largest request body, in bytes (a full batch of large transactions).
pub const BODY_BYTES_MAX: usize = 16 << 20;

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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Runs `f` on the blocking pool with the shared node state.
async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Shared) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let s = Arc::clone(shared);
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(ApiError::internal)?
}

fn hex32(what: &str, text: &str) -> Result<[u8; 32], ApiError> {
    crate::client::hex32(what, text).map_err(ApiError::bad)
}

/// The router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/txs", post(post_txs))
        .route("/v1/txs/{id}", get(get_tx))
        .route("/v1/status", get(status))
        .route("/v1/accounts/{pubkey}", get(account))
        .route("/v1/state/{key}", get(state_raw))
        .route("/v1/state/{owner}/{key}", get(state_user))
        .route("/v1/blocks/{block}", get(block))
        .route("/v1/blocks/{block}/ids", get(block_ids))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(shared)
}

/// Serves the API on `addr` until the node's stop flag is set.
///
/// # Errors
/// When the address cannot be bound.
pub fn serve(shared: Arc<Shared>, addr: SocketAddr) -> Result<std::thread::JoinHandle<()>, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("strata-api")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the API runtime: {e}"))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| format!("cannot bind the API on {addr}: {e}"))?;
    tracing::info!(%addr, "API listening");
    let app = router(Arc::clone(&shared));
    std::thread::Builder::new()
        .name("strata-api-main".into())
        .spawn(move || {
            let stop = async move {
                while !shared.stop.load(Ordering::Acquire) {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            };
            let served = runtime.block_on(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            });
            if let Err(e) = served {
                tracing::error!("API server: {e}");
            }
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
        })
        .map_err(|e| e.to_string())
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

async fn post_txs(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let txs = parse_txs(&headers, &body)?;
    let results = blocking(&s, move |s| Ok(s.submit(txs))).await?;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let results: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(id) => json!({ "id": hex::encode(id) }),
            Err(e) => json!({ "error": e.to_string() }),
        })
        .collect();
    Ok(Json(json!({ "accepted": accepted, "results": results })))
}

async fn get_tx(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = hex32("transaction id", &id)?;
    blocking(&s, move |s| {
        let core = s.core();
        if let Some(h) = core.chain.tx_height(&id).map_err(ApiError::internal)? {
            return Ok(Json(json!({ "status": "finalized", "height": h })));
        }
        let status = if core.engine.mempool().contains(&id) {
            "pending"
        } else {
            "unknown"
        };
        Ok(Json(json!({ "status": status })))
    })
    .await
}

async fn status(State(s): State<Arc<Shared>>) -> ApiResult {
    blocking(&s, |s| {
        let core = s.core();
        let peers = s.net.peers().len();
        Ok(Json(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "chain_id": s.genesis.chain_id,
            "node_key": hex::encode(s.net.node_key()),
            "height": core.chain.height(),
            "block_id": hex::encode(core.chain.last_block_id()),
            "state_root": hex::encode(core.chain.state_root()),
            "peers": peers,
            "mempool_txs": core.engine.mempool().len(),
            "halted": *s.halted.lock().unwrap_or_else(|p| p.into_inner()),
            "uptime_s": s.started.elapsed().as_secs(),
        })))
    })
    .await
}

async fn account(State(s): State<Arc<Shared>>, Path(pk): Path<String>) -> ApiResult {
    let pk = hex32("public key", &pk)?;
    blocking(&s, move |s| {
        let core = s.core();
        let a = core.chain.account(&pk);
        Ok(Json(json!({
            "public_key": hex::encode(pk),
            "balance": a.balance,
            "nonce": a.nonce,
            "height": core.chain.height(),
        })))
    })
    .await
}

fn prove(s: &Shared, state_key: [u8; 32]) -> ApiResult {
    let core = s.core();
    let (value, proof) = core.chain.prove(&state_key).map_err(ApiError::internal)?;
    Ok(Json(json!({
        "state_key": hex::encode(state_key),
        "value": value.map(hex::encode),
        "proof": hex::encode(proof.encode()),
        "root": hex::encode(core.chain.state_root()),
        "height": core.chain.height(),
    })))
}

async fn state_raw(State(s): State<Arc<Shared>>, Path(key): Path<String>) -> ApiResult {
    let key = hex32("state key", &key)?;
    blocking(&s, move |s| prove(s, key)).await
}

async fn state_user(
    State(s): State<Arc<Shared>>,
    Path((owner, key)): Path<(String, String)>,
) -> ApiResult {
    let owner = hex32("owner", &owner)?;
    let key = hex::decode(&key).map_err(|_| ApiError::bad("key: not hex"))?;
    if key.len() > USER_KEY_BYTES_MAX {
        return Err(ApiError::bad(format!(
            "key: {} bytes, over the limit of {USER_KEY_BYTES_MAX}",
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
async fn find_block(s: &Arc<Shared>, which: String) -> Result<Block, ApiError> {
    let by_height = which.parse::<u64>().ok();
    let by_id = if by_height.is_none() {
        Some(hex32("block (height or id)", &which)?)
    } else {
        None
    };
    blocking(s, move |s| {
        let core = s.core();
        let height = match (by_height, by_id) {
            (Some(h), _) => h,
            (None, Some(id)) => core
                .chain
                .block_height(&id)
                .map_err(ApiError::internal)?
                .ok_or_else(|| ApiError::not_found("no finalized block with that id"))?,
            (None, None) => unreachable!("one of the two is set"),
        };
        core.chain
            .finalized_block(height)
            .ok_or_else(|| ApiError::not_found(format!("no finalized block at height {height}")))
    })
    .await
}

async fn block(State(s): State<Arc<Shared>>, Path(which): Path<String>) -> ApiResult {
    Ok(Json(block_json(&find_block(&s, which).await?)))
}

/// The block's transaction ids as raw bytes, 32 per id in block order
/// (`application/octet-stream`): what a client following finality at
/// high rates reads instead of a JSON array of hex strings (the bench
/// does; for 4,096 ids that is 128 KiB instead of 270 KiB of JSON to
/// build and parse).
async fn block_ids(
    State(s): State<Arc<Shared>>,
    Path(which): Path<String>,
) -> Result<Response, ApiError> {
    let b = find_block(&s, which).await?;
    let ids: Vec<u8> = b.tx_ids().iter().flatten().copied().collect();
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], ids).into_response())
}

async fn metrics(State(s): State<Arc<Shared>>) -> Result<Response, ApiError> {
    let text = blocking(&s, |s| {
        let core = s.core();
        let m = &s.metrics;
        let e = core.engine.stats();
        let n = s.net.stats();
        let uptime = s.started.elapsed().as_secs_f64().max(1e-9);
        let finalized = m.txs_finalized.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            out.push_str(&format!(
                "# HELP strata_{name} {help}\n# TYPE strata_{name} {kind}\nstrata_{name} {value}\n"
            ));
        };
        metric(
            "height",
            "gauge",
            "Last finalized height.",
            core.chain.height() as f64,
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
            m.txs_received.load(Ordering::Relaxed) as f64,
        );
        metric(
            "txs_admitted_total",
            "counter",
            "Transactions admitted to the mempool.",
            m.txs_admitted.load(Ordering::Relaxed) as f64,
        );
        metric(
            "blocks_finalized_total",
            "counter",
            "Blocks finalized since start.",
            m.blocks_finalized.load(Ordering::Relaxed) as f64,
        );
        metric(
            "mempool_txs",
            "gauge",
            "Transactions in the mempool.",
            core.engine.mempool().len() as f64,
        );
        metric(
            "mempool_bytes",
            "gauge",
            "Bytes in the mempool.",
            core.engine.mempool().bytes() as f64,
        );
        metric(
            "peers",
            "gauge",
            "Connected peers.",
            s.net.peers().len() as f64,
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
            s.verified.checked() as f64,
        );
        metric(
            "signature_batches_total",
            "counter",
            "Batches of signatures checked (checked / batches = mean batch size).",
            s.verified.batches() as f64,
        );
        metric(
            "signatures_skipped_total",
            "counter",
            "Transactions not checked again: already found valid.",
            s.verified.skipped() as f64,
        );
        metric(
            "requests_busy_total",
            "counter",
            "Client batches answered busy: verification queue full.",
            m.requests_busy.load(Ordering::Relaxed) as f64,
        );
        metric(
            "txs_shed_total",
            "counter",
            "Gossiped transactions dropped: verification queue full.",
            m.txs_shed.load(Ordering::Relaxed) as f64,
        );
        metric(
            "payloads_undecodable_total",
            "counter",
            "Peer payloads that did not decode.",
            m.payloads_undecodable.load(Ordering::Relaxed) as f64,
        );
        metric(
            "txs_invalid_from_peers_total",
            "counter",
            "Transactions from peers that did not verify (each sender banned).",
            m.txs_invalid_from_peers.load(Ordering::Relaxed) as f64,
        );
        metric(
            "net_bytes_in_total",
            "counter",
            "Bytes received.",
            n.bytes_in.load(Ordering::Relaxed) as f64,
        );
        metric(
            "net_bytes_out_total",
            "counter",
            "Bytes sent.",
            n.bytes_out.load(Ordering::Relaxed) as f64,
        );
        metric(
            "net_peers_dropped_total",
            "counter",
            "Peers dropped for misbehaviour.",
            n.peers_dropped.load(Ordering::Relaxed) as f64,
        );
        metric(
            "net_bans_total",
            "counter",
            "Bans issued.",
            n.bans.load(Ordering::Relaxed) as f64,
        );
        let st = s.db.stats();
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
        Ok(out)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
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
