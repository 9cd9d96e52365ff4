//! HTTP handlers and the router ([`app`]).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use tokio::time::Instant;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::{debug, info};

use crate::clock::{iso8601, unix_micros_now};
use crate::error::ApiError;
use crate::metrics::{metric, route_index};
use crate::registry::{Authority, PeerFilter, RegistryError, render_peer};
use crate::state::AppState;
use crate::validate::{self, FieldError};
use crate::{dashboard, watch};

/// Header carrying the per-cell secret.
pub const SECRET_HEADER: &str = "x-cell-secret";
/// Header carrying the incarnation on `DELETE` (alternative to `?incarnation=`).
pub const INCARNATION_HEADER: &str = "x-cell-incarnation";
/// Header carrying the registry revision on `/peers`.
pub const REVISION_HEADER: &str = "x-registry-revision";

/// The router, for oneshot tests and [`crate::serve`].
pub fn app(state: AppState) -> Router {
    let limit = state.config().body_limit;
    Router::new()
        .route("/", get(dashboard::page))
        .route("/register", post(register))
        .route("/heartbeat", post(heartbeat))
        .route("/peers", get(list_peers))
        .route("/peers/watch", get(watch::watch))
        .route("/peers/{cell_id}", get(get_peer))
        .route("/peer/{cell_id}", delete(deregister))
        .route("/unregister/{cell_id}", delete(unregister))
        .route("/health", get(health))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        // 503s from /readyz and a full registry are expected answers, not failures.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG))
                .make_span_with(|req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("other", MatchedPath::as_str);
                    tracing::debug_span!("request", method = %req.method(), route, uri = %req.uri())
                }),
        )
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
}

/// Times every request, applies the request timeout and records the latency per route.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let route = route_index(
        req.extensions()
            .get::<MatchedPath>()
            .map_or("other", MatchedPath::as_str),
    );
    let timeout = state.config().request_timeout;
    let resp = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Timeout.into_response(),
    };
    let m = &state.inner.metrics;
    match resp.status() {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            m.auth_failures.fetch_add(1, Ordering::Relaxed);
        }
        StatusCode::CONFLICT => {
            m.stale_incarnations.fetch_add(1, Ordering::Relaxed);
        }
        s if s.is_client_error() && s != StatusCode::NOT_FOUND => {
            m.bad_requests.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
    m.observe(route, start.elapsed());
    resp
}

/// A request body read up to the configured limit (413 beyond, JSON error).
pub struct LimitedBody(pub Bytes);

impl FromRequest<AppState> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read_body(req.into_body(), state).await.map(Self)
    }
}

/// Reads a body up to the configured limit.
async fn read_body(body: Body, state: &AppState) -> Result<Bytes, ApiError> {
    {
        let limit = state.config().body_limit;
        match Limited::new(body, limit).collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                Err(ApiError::PayloadTooLarge(limit))
            }
            Err(e) => {
                debug!(error = %e, "request body could not be read");
                Err(ApiError::BadRequest(
                    "The request body could not be read.".into(),
                ))
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Checks the bearer token; answers whether it is the admin token.
fn check_token(state: &AppState, headers: &HeaderMap) -> Result<bool, ApiError> {
    let cfg = state.config();
    let given = bearer(headers);
    let is_admin = matches!((given, &cfg.admin_token), (Some(g), Some(a)) if same(g, a));
    if is_admin {
        return Ok(true);
    }
    if let Some(token) = &cfg.token {
        match given {
            None => {
                return Err(ApiError::Unauthorized(
                    "Missing bearer token: send 'Authorization: Bearer <token>'.",
                ));
            }
            Some(g) if !same(g, token) => {
                return Err(ApiError::Unauthorized("Invalid bearer token."));
            }
            Some(_) => {}
        }
    }
    Ok(false)
}

fn authority<'a>(state: &AppState, headers: &'a HeaderMap) -> Result<Authority<'a>, ApiError> {
    let admin = check_token(state, headers)?;
    Ok(if !state.config().security_on() {
        Authority::Open
    } else if admin {
        Authority::Admin
    } else {
        Authority::Secret(headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok()))
    })
}

fn registry_error(e: RegistryError, not_found: &'static str, id: &str) -> ApiError {
    match e {
        RegistryError::NotFound => ApiError::NotFound(not_found),
        RegistryError::StaleIncarnation => ApiError::Conflict(format!(
            "Stale incarnation: cell '{id}' has registered again since; this lease is no longer current."
        )),
        RegistryError::BadSecret => ApiError::Forbidden(
            "Missing or wrong X-Cell-Secret: only the cell's own secret or the admin token may do this.",
        ),
        RegistryError::Full => ApiError::Unavailable("The registry is full.".into()),
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    check_token(&state, &headers)?;
    let info = validate::cell_info(&body)?;
    let secret: [u8; crate::registry::SECRET_LEN] = rand::random();
    let now = Instant::now();
    let result = state
        .registry()
        .register(&info, secret, now, unix_micros_now());
    let reg = result.map_err(|e| registry_error(e, "Peer not found", &info.cell_id))?;
    if reg.wake_reaper {
        state.wake_reaper();
    }
    info!(
        cell_id = %info.cell_id,
        incarnation = reg.incarnation,
        replaced = reg.replaced,
        ip = %info.ip,
        port = info.port,
        "peer registered"
    );
    let body = json!({
        "status": "registered",
        "cell_id": info.cell_id,
        "incarnation": reg.incarnation,
        "secret": hex::encode(secret),
        "replaced": reg.replaced,
        "ttl_ms": state.config().ttl.as_millis() as u64,
    });
    Ok(Json(body).into_response())
}

async fn heartbeat(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    // Takes the whole request to borrow its headers instead of cloning them (hot path).
    let (parts, body) = req.into_parts();
    let auth = authority(&state, &parts.headers)?;
    let body = read_body(body, &state).await?;
    let hb = validate::heartbeat(&body)?;
    let now = Instant::now();
    let result = state.registry().heartbeat(
        &hb.cell_id,
        hb.consciousness_level,
        hb.incarnation,
        auth,
        now,
        unix_micros_now(),
    );
    let ack = result.map_err(|e| {
        debug!(cell_id = %hb.cell_id, error = %e, "heartbeat refused");
        registry_error(
            e,
            "Peer ID not registered. Call /register first.",
            &hb.cell_id,
        )
    })?;
    let mut out = Vec::with_capacity(96 + hb.cell_id.len());
    out.extend_from_slice(b"{\"status\":\"ok\",\"cell_id\":\"");
    out.extend_from_slice(hb.cell_id.as_bytes()); // validated: no characters needing escapes
    out.extend_from_slice(b"\",\"peers_count\":");
    crate::registry::push_u64(&mut out, ack.peers_count as u64);
    out.extend_from_slice(b",\"incarnation\":");
    crate::registry::push_u64(&mut out, ack.incarnation);
    out.push(b'}');
    Ok(json_response(StatusCode::OK, out))
}

/// Parses `?incarnation=N` (or the `X-Cell-Incarnation` header).
fn incarnation(uri: &Uri, headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let (raw, place) = match query_pairs(uri).find(|(k, _)| k == "incarnation") {
        Some((_, v)) => (Some(v), "query"),
        None => (
            headers
                .get(INCARNATION_HEADER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            "header",
        ),
    };
    let Some(raw) = raw else { return Ok(None) };
    let field = if place == "query" {
        "incarnation"
    } else {
        INCARNATION_HEADER
    };
    let at = vec![Value::from(place), Value::from(field)];
    let n = validate::lax_int(&Value::from(raw.clone()), at.clone()).map_err(|e| vec![e])?;
    u64::try_from(n).map(Some).map_err(|_| {
        ApiError::Validation(vec![FieldError {
            kind: "greater_than_equal",
            loc: at,
            msg: format!("{field}: Input should be greater than or equal to 0"),
            input: Value::from(raw),
            ctx: Some(Box::new(json!({"ge": 0}))),
        }])
    })
}

/// Decoded `key=value` pairs of the query string.
pub fn query_pairs(uri: &Uri) -> impl Iterator<Item = (String, String)> + '_ {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Parses the `/peers` filters: `service`, `type`, `branch`, `min_level`.
pub fn parse_filter(uri: &Uri) -> Result<PeerFilter, ApiError> {
    let mut f = PeerFilter::default();
    for (k, v) in query_pairs(uri) {
        match k.as_str() {
            "service" => f.service = Some(v),
            "type" => f.cell_type = Some(v),
            "branch" => f.branch = Some(v),
            "min_level" => {
                let at = vec![Value::from("query"), Value::from("min_level")];
                f.min_level = Some(validate::lax_float(&Value::from(v), at).map_err(|e| vec![e])?);
            }
            _ => {}
        }
    }
    Ok(f)
}

fn path_id(
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    path.map(|Path(id)| id).map_err(|e| {
        ApiError::Validation(vec![FieldError {
            kind: "string_type",
            loc: vec![Value::from("path"), Value::from("cell_id")],
            msg: "cell_id: Input should be a valid string".into(),
            input: Value::from(e.body_text()),
            ctx: None,
        }])
    })
}

async fn do_deregister(
    state: &AppState,
    id: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let auth = authority(state, headers)?;
    let inc = incarnation(uri, headers)?;
    let result = state.registry().deregister(id, inc, auth, Instant::now());
    result.map_err(|e| registry_error(e, "Peer not found", id))?;
    info!(cell_id = %id, reason = "deregistered", "peer evicted");
    Ok(())
}

async fn deregister(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id(path)?;
    do_deregister(&state, &id, &uri, &headers).await?;
    Ok(Json(json!({"status": "deregistered", "cell_id": id})).into_response())
}

async fn unregister(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id(path)?;
    do_deregister(&state, &id, &uri, &headers).await?;
    Ok(Json(json!({"status": "unregistered", "cell_id": id})).into_response())
}

/// The weak ETag of a registry revision.
pub fn etag(state: &AppState, revision: u64) -> String {
    format!("W/\"{}-{}\"", state.inner.boot, revision)
}

fn etag_matches(headers: &HeaderMap, tag: &str) -> bool {
    let Some(v) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let bare = tag.trim_start_matches("W/");
    v.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == bare)
}

async fn list_peers(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let filter = parse_filter(&uri)?;
    let view = state.peers_view();
    let tag = etag(&state, view.revision);
    if etag_matches(&headers, &tag) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        insert_tag(&mut resp, &tag, view.revision);
        return Ok(resp);
    }
    let hint = state.inner.last_peers_len.load(Ordering::Relaxed);
    let mut out = Vec::with_capacity(hint + 256);
    out.extend_from_slice(b"{\"peers\":[");
    let count = view.render(&mut out, &filter, Instant::now());
    out.extend_from_slice(b"],\"count\":");
    crate::registry::push_u64(&mut out, count as u64);
    out.extend_from_slice(b",\"my_host\":");
    out.extend_from_slice(state.inner.my_host_json.as_bytes());
    out.extend_from_slice(b",\"revision\":");
    crate::registry::push_u64(&mut out, view.revision);
    out.push(b'}');
    if filter.is_empty() {
        state
            .inner
            .last_peers_len
            .store(out.len(), Ordering::Relaxed);
    }
    let mut resp = json_response(StatusCode::OK, out);
    insert_tag(&mut resp, &tag, view.revision);
    Ok(resp)
}

fn insert_tag(resp: &mut Response, tag: &str, revision: u64) {
    if let Ok(v) = HeaderValue::from_str(tag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp.headers_mut()
        .insert(REVISION_HEADER, HeaderValue::from(revision));
}

async fn get_peer(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(path)?;
    let (found, epoch) = {
        let reg = state.registry();
        (reg.peer(&id), reg.epoch())
    };
    let rec = found.ok_or(ApiError::NotFound("Peer not found"))?;
    let mut out = Vec::with_capacity(512);
    render_peer(&mut out, &rec, epoch, Instant::now());
    Ok(json_response(StatusCode::OK, out))
}

async fn health(State(state): State<AppState>) -> Response {
    let now = Instant::now();
    let (count, revision, grace) = {
        let reg = state.registry();
        (reg.len(), reg.revision(), reg.in_grace(now))
    };
    Json(json!({
        "status": "healthy",
        "service": "discovery",
        "cell_id": state.config().my_host,
        "my_host": state.config().my_host,
        "peers_count": count,
        "revision": revision,
        "ready": !grace,
        "uptime_seconds": now.duration_since(state.inner.started).as_secs_f64(),
        "timestamp": iso8601(unix_micros_now()),
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let now = Instant::now();
    let grace_left = {
        let reg = state.registry();
        reg.in_grace(now)
            .then(|| state.inner.started + state.config().startup_grace - now)
    };
    match grace_left {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(left) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "starting",
                "detail": format!(
                    "Start-up grace window: cells are still re-registering ({} ms left).",
                    left.as_millis()
                ),
            })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let now = Instant::now();
    let (count, revision, stats, held, holding, grace) = {
        let reg = state.registry();
        (
            reg.len(),
            reg.revision(),
            reg.stats().clone(),
            reg.held(now),
            reg.holding(now),
            reg.in_grace(now),
        )
    };
    let host = &state.config().my_host;
    let cell = format!(
        "cell_id=\"{}\"",
        host.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let m = &state.inner.metrics;
    let mut out = String::with_capacity(8192);
    let f = |v: u64| v as f64;
    metric(
        &mut out,
        "aios_cell_peers_count",
        "gauge",
        "Registered peers.",
        &[(&cell, count as f64)],
    );
    metric(
        &mut out,
        "discovery_peers",
        "gauge",
        "Registered peers.",
        &[("", count as f64)],
    );
    metric(
        &mut out,
        "discovery_registry_revision",
        "gauge",
        "Registry revision (membership and level changes).",
        &[("", f(revision))],
    );
    metric(
        &mut out,
        "discovery_registrations_total",
        "counter",
        "Registrations of new cell ids.",
        &[("", f(stats.registrations))],
    );
    metric(
        &mut out,
        "discovery_reregistrations_total",
        "counter",
        "Registrations that replaced a live incarnation.",
        &[("", f(stats.reregistrations))],
    );
    metric(
        &mut out,
        "discovery_heartbeats_total",
        "counter",
        "Accepted heartbeats.",
        &[("", f(stats.heartbeats))],
    );
    metric(
        &mut out,
        "discovery_evictions_total",
        "counter",
        "Peers removed, by reason.",
        &[
            ("reason=\"deregistered\"", f(stats.evicted_deregistered)),
            ("reason=\"expired\"", f(stats.evicted_expired)),
            ("reason=\"replaced\"", f(stats.evicted_replaced)),
        ],
    );
    metric(
        &mut out,
        "discovery_evictions_held",
        "gauge",
        "Peers past their deadline whose eviction is held (grace window or mass-eviction guard).",
        &[("", held as f64)],
    );
    metric(
        &mut out,
        "discovery_eviction_hold_active",
        "gauge",
        "1 while the mass-eviction guard holds evictions.",
        &[("", f(u64::from(holding)))],
    );
    metric(
        &mut out,
        "discovery_eviction_holds_total",
        "counter",
        "Mass-eviction holds started.",
        &[("", f(stats.holds))],
    );
    metric(
        &mut out,
        "discovery_startup_grace",
        "gauge",
        "1 during the start-up grace window.",
        &[("", f(u64::from(grace)))],
    );
    metric(
        &mut out,
        "discovery_watchers",
        "gauge",
        "Open watch streams.",
        &[("", f(m.watchers.load(Ordering::Relaxed)))],
    );
    metric(
        &mut out,
        "discovery_auth_failures_total",
        "counter",
        "Requests refused for a missing or wrong token or secret.",
        &[("", f(m.auth_failures.load(Ordering::Relaxed)))],
    );
    metric(
        &mut out,
        "discovery_stale_incarnations_total",
        "counter",
        "Requests refused with 409 for a stale incarnation.",
        &[("", f(m.stale_incarnations.load(Ordering::Relaxed)))],
    );
    metric(
        &mut out,
        "discovery_bad_requests_total",
        "counter",
        "Requests refused as invalid.",
        &[("", f(m.bad_requests.load(Ordering::Relaxed)))],
    );
    m.render_histogram(&mut out);
    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
