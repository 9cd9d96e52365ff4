//! The batch calls of a many-cell host (`POST /batch/register`,
//! `/batch/heartbeat`, `/batch/deregister`: see `cellmesh_wire::batch`),
//! with typed answers: each cell's refusal is the [`DiscoveryError`] the
//! single call would have answered; a discovery without batch calls (404 or
//! 405 to their paths) is [`DiscoveryError::NoBatchCalls`].

use std::time::Duration;

use cellmesh_wire::batch::{
    BatchDeregisterAnswer, BatchDeregisterRequest, BatchHeartbeatAnswer, BatchHeartbeatRequest,
    BatchRegisterAnswer, BatchRegisterRequest, CellOutcome,
};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::{DiscoveryClient, DiscoveryError, Lease};

impl DiscoveryError {
    /// The error of one cell's refused part of a batch: the one the single
    /// call would have answered with the outcome's `code` and `detail`.
    pub(super) fn of_outcome(outcome: &CellOutcome) -> Self {
        let detail = outcome.detail.clone().unwrap_or_default();
        match outcome.code.and_then(|c| StatusCode::from_u16(c).ok()) {
            Some(status) if !status.is_success() => Self::from_status(status, detail),
            _ => DiscoveryError::Decode(format!(
                "cell `{}` refused without an error code ({:?}): {detail}",
                outcome.cell_id, outcome.code
            )),
        }
    }
}

/// One cell a batch call did not renew or remove, and why.
#[derive(Debug)]
pub struct CellRefusal {
    /// The cell.
    pub cell_id: String,
    /// What the single call would have answered (404:
    /// [`DiscoveryError::NotRegistered`], 409: [`DiscoveryError::Conflict`],
    /// 403: [`DiscoveryError::Forbidden`]...).
    pub error: DiscoveryError,
}

/// The answer to `POST /batch/register`.
#[derive(Debug)]
pub struct BatchRegistered {
    /// One per cell of the request, in its order: the lease issued, or what
    /// the single call would have answered.
    pub results: Vec<Result<Lease, DiscoveryError>>,
}

/// The answer to `POST /batch/heartbeat`.
#[derive(Debug)]
pub struct BatchRenewed {
    /// Cells renewed.
    pub renewed: usize,
    /// Live peers in the registry.
    pub peers_count: u64,
    /// The cells not renewed.
    pub refused: Vec<CellRefusal>,
}

/// The answer to `POST /batch/deregister`.
#[derive(Debug)]
pub struct BatchDeregistered {
    /// Cells removed.
    pub deregistered: usize,
    /// The cells not removed (404: already gone).
    pub refused: Vec<CellRefusal>,
}

fn refusals(outcomes: &[CellOutcome]) -> Vec<CellRefusal> {
    outcomes
        .iter()
        .map(|outcome| CellRefusal {
            cell_id: outcome.cell_id.clone(),
            error: DiscoveryError::of_outcome(outcome),
        })
        .collect()
}

impl DiscoveryClient {
    /// `POST /batch/register`: registers every cell of `request` (at most
    /// [`cellmesh_wire::batch::BATCH_MAX_CELLS`]) for its host. Answers one
    /// result per cell, in request order; fails as a whole only when the
    /// batch is (no batch calls, unreachable, refused as a whole...).
    pub async fn batch_register(
        &self,
        request: &BatchRegisterRequest,
    ) -> Result<BatchRegistered, DiscoveryError> {
        let url = format!("{}/batch/register", self.base);
        let answer: BatchRegisterAnswer = self.send_batch(&url, request).await?;
        if answer.results.len() != request.cells.len() {
            return Err(DiscoveryError::Decode(format!(
                "the batch registration of {} cells was answered with {} results",
                request.cells.len(),
                answer.results.len()
            )));
        }
        let ttl = Duration::from_millis(answer.ttl_ms);
        let mut results = Vec::with_capacity(answer.results.len());
        for (asked, outcome) in request.cells.iter().zip(answer.results) {
            if outcome.cell_id != asked.registration.cell_id {
                return Err(DiscoveryError::Decode(format!(
                    "the batch registration answered `{}` where `{}` was asked",
                    outcome.cell_id, asked.registration.cell_id
                )));
            }
            results.push(if outcome.is_ok() {
                Ok(Lease {
                    incarnation: outcome.incarnation,
                    secret: outcome.secret,
                    ttl: Some(ttl),
                })
            } else {
                Err(DiscoveryError::of_outcome(&outcome))
            });
        }
        Ok(BatchRegistered { results })
    }

    /// `POST /batch/heartbeat`: renews every cell of `request`; the cells
    /// not renewed are listed with why.
    pub async fn batch_heartbeat(
        &self,
        request: &BatchHeartbeatRequest,
    ) -> Result<BatchRenewed, DiscoveryError> {
        let url = format!("{}/batch/heartbeat", self.base);
        let answer: BatchHeartbeatAnswer = self.send_batch(&url, request).await?;
        Ok(BatchRenewed {
            renewed: answer.renewed,
            peers_count: answer.peers_count as u64,
            refused: refusals(&answer.refused),
        })
    }

    /// `POST /batch/deregister`: removes every cell of `request`; the cells
    /// not removed are listed with why.
    pub async fn batch_deregister(
        &self,
        request: &BatchDeregisterRequest,
    ) -> Result<BatchDeregistered, DiscoveryError> {
        let url = format!("{}/batch/deregister", self.base);
        let answer: BatchDeregisterAnswer = self.send_batch(&url, request).await?;
        Ok(BatchDeregistered {
            deregistered: answer.deregistered,
            refused: refusals(&answer.refused),
        })
    }

    /// Posts a batch `body` to `url` and reads the answer (at most the
    /// batch limit); 404 or 405 is [`DiscoveryError::NoBatchCalls`].
    async fn send_batch<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<T, DiscoveryError> {
        let response = self.call(self.http.post(url).json(body), url).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(DiscoveryError::NoBatchCalls {
                url: url.to_owned(),
                status,
            });
        }
        self.read(response, url, self.max_batch_answer_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery_client::{Registration, http_client};

    use axum::Json;
    use axum::http::StatusCode as Code;
    use axum::routing::post;
    use cellmesh_wire::batch::{BatchRegistration, CellBeat};
    use serde_json::json;

    /// Serves `router` on 127.0.0.1:0; a client of it.
    async fn serve(router: axum::Router) -> (DiscoveryClient, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let client = DiscoveryClient::new(http_client(Duration::from_secs(5)), &url);
        (client, task)
    }

    fn registration(id: &str) -> BatchRegistration {
        BatchRegistration {
            registration: Registration {
                cell_id: id.to_owned(),
                ip: "127.0.0.1".to_owned(),
                port: 1,
                consciousness_level: 0.5,
                services: vec![],
                branch: "main".to_owned(),
                cell_type: "pure_cell".to_owned(),
                hostname: "h".to_owned(),
            },
            secret: None,
        }
    }

    fn register_request(ids: &[&str]) -> BatchRegisterRequest {
        BatchRegisterRequest {
            host_id: "host-1".to_owned(),
            cells: ids.iter().map(|id| registration(id)).collect(),
        }
    }

    /// The original discovery (FastAPI) answers 404 `{"detail":"Not
    /// Found"}` to a path it lacks, and 405 to a method a path lacks: both
    /// mean "no batch calls", told apart from any other failure.
    #[tokio::test]
    async fn a_discovery_without_batch_calls_is_told_apart() {
        let router = axum::Router::new()
            .route(
                "/batch/heartbeat",
                axum::routing::get(|| async { "only GET here" }),
            )
            .fallback(|| async { (Code::NOT_FOUND, Json(json!({"detail": "Not Found"}))) });
        let (client, task) = serve(router).await;
        let error = client
            .batch_register(&register_request(&["a"]))
            .await
            .unwrap_err();
        assert!(
            matches!(error, DiscoveryError::NoBatchCalls { status, .. } if status == 404),
            "{error:?}"
        );
        let beat = BatchHeartbeatRequest {
            host_id: "host-1".into(),
            cells: vec![],
        };
        let error = client.batch_heartbeat(&beat).await.unwrap_err();
        assert!(
            matches!(error, DiscoveryError::NoBatchCalls { status, .. } if status == 405),
            "{error:?}"
        );
        assert!(error.to_string().contains("has no batch calls"), "{error}");
        task.abort();
    }

    /// Whole-batch failures keep their single-call meaning; a 5xx is not
    /// "no batch calls".
    #[tokio::test]
    async fn whole_batch_failures_are_not_mistaken_for_missing_calls() {
        let router = axum::Router::new()
            .route(
                "/batch/register",
                post(|| async {
                    (
                        Code::UNPROCESSABLE_ENTITY,
                        Json(json!({"detail": "host_id: too long"})),
                    )
                }),
            )
            .route(
                "/batch/heartbeat",
                post(|| async { (Code::SERVICE_UNAVAILABLE, Json(json!({"detail": "busy"}))) }),
            );
        let (client, task) = serve(router).await;
        let error = client
            .batch_register(&register_request(&["a"]))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, DiscoveryError::Refused { detail, .. } if detail == "host_id: too long"),
            "{error:?}"
        );
        let beat = BatchHeartbeatRequest {
            host_id: "host-1".into(),
            cells: vec![],
        };
        let error = client.batch_heartbeat(&beat).await.unwrap_err();
        assert!(
            matches!(error, DiscoveryError::Status { status, .. } if status == 503),
            "{error:?}"
        );
        task.abort();
    }

    /// Each cell's outcome becomes a lease or the error the single call
    /// would have answered; a batch answer carries the secret and the TTL.
    #[tokio::test]
    async fn per_cell_outcomes_become_leases_and_single_call_errors() {
        let router = axum::Router::new()
            .route(
                "/batch/register",
                post(|| async {
                    Json(json!({"host_id": "host-1", "ttl_ms": 15000, "results": [
                        {"cell_id": "a", "status": "registered", "incarnation": 7,
                         "secret": "0123456789abcdef0123456789abcdef", "replaced": false},
                        {"cell_id": "b", "status": "refused", "code": 422, "detail": "branch: too long"},
                        {"cell_id": "c", "status": "refused", "code": 409, "detail": "held"},
                        {"cell_id": "d", "status": "refused", "code": 503, "detail": "full"}
                    ]}))
                }),
            )
            .route(
                "/batch/heartbeat",
                post(|| async {
                    Json(json!({"status": "ok", "host_id": "host-1", "renewed": 1,
                                "peers_count": 12, "refused": [
                        {"cell_id": "b", "status": "refused", "code": 404, "detail": "gone"},
                        {"cell_id": "c", "status": "refused", "code": 403, "detail": "secret"},
                        {"cell_id": "d", "status": "refused", "detail": "no code"}
                    ]}))
                }),
            )
            .route(
                "/batch/deregister",
                post(|| async {
                    Json(json!({"status": "deregistered", "host_id": "host-1",
                                "deregistered": 2, "refused": []}))
                }),
            );
        let (client, task) = serve(router).await;
        let answer = client
            .batch_register(&register_request(&["a", "b", "c", "d"]))
            .await
            .unwrap();
        let lease = answer.results[0].as_ref().unwrap();
        assert_eq!(lease.incarnation, Some(7));
        assert_eq!(lease.ttl, Some(Duration::from_secs(15)));
        assert!(lease.secret.is_some());
        assert!(matches!(
            &answer.results[1],
            Err(DiscoveryError::Refused { status, detail }) if *status == 422 && detail == "branch: too long"
        ));
        assert!(matches!(&answer.results[2], Err(DiscoveryError::Conflict(d)) if d == "held"));
        assert!(matches!(
            &answer.results[3],
            Err(DiscoveryError::Status { status, .. }) if *status == 503
        ));

        let beat = BatchHeartbeatRequest {
            host_id: "host-1".into(),
            cells: vec![CellBeat {
                cell_id: "a".into(),
                consciousness_level: 0.5,
                incarnation: 7,
                secret: "0123456789abcdef0123456789abcdef".into(),
            }],
        };
        let renewed = client.batch_heartbeat(&beat).await.unwrap();
        assert_eq!((renewed.renewed, renewed.peers_count), (1, 12));
        let errors: Vec<(&str, &DiscoveryError)> = renewed
            .refused
            .iter()
            .map(|r| (r.cell_id.as_str(), &r.error))
            .collect();
        assert!(matches!(errors[0], ("b", DiscoveryError::NotRegistered(_))));
        assert!(matches!(errors[1], ("c", DiscoveryError::Forbidden(_))));
        assert!(matches!(errors[2], ("d", DiscoveryError::Decode(_))));

        let gone = client
            .batch_deregister(&BatchDeregisterRequest {
                host_id: "host-1".into(),
                cells: vec![],
            })
            .await
            .unwrap();
        assert_eq!(gone.deregistered, 2);
        task.abort();
    }

    /// An answer that does not match the request (another count, another
    /// order) is unreadable, never applied to the wrong cells; batch answers
    /// have their own size limit.
    #[tokio::test]
    async fn mismatched_or_oversized_batch_answers_are_refused() {
        let router = axum::Router::new().route(
            "/batch/register",
            post(|| async {
                Json(json!({"host_id": "host-1", "ttl_ms": 15000, "results": [
                    {"cell_id": "b", "status": "registered", "incarnation": 1, "secret": "00"},
                    {"cell_id": "a", "status": "registered", "incarnation": 2, "secret": "00"}
                ]}))
            }),
        );
        let (client, task) = serve(router).await;
        let error = client
            .batch_register(&register_request(&["a"]))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, DiscoveryError::Decode(d) if d.contains("1 cells was answered with 2")),
            "{error:?}"
        );
        let error = client
            .batch_register(&register_request(&["a", "b"]))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, DiscoveryError::Decode(d) if d.contains("answered `b` where `a`")),
            "{error:?}"
        );
        let small = client.clone().with_batch_answer_limit(16);
        let error = small
            .batch_register(&register_request(&["a", "b"]))
            .await
            .unwrap_err();
        assert!(
            matches!(error, DiscoveryError::TooLarge { limit: 16, .. }),
            "{error:?}"
        );
        task.abort();
    }
}
