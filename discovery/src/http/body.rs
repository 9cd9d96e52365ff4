//! Request bodies read up to the configured limit (the batch calls have their own: 413 beyond,
//! in the app's JSON error shape), and the answers to a registration over its byte budget.

use axum::body::{Body, Bytes, HttpBody};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tracing::debug;

use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::RegistrationError;

impl From<RegistrationError> for ApiError {
    fn from(e: RegistrationError) -> Self {
        match e {
            RegistrationError::Invalid(errors) => Self::Validation(errors),
            RegistrationError::TooLarge { budget } => Self::PayloadTooLarge(budget),
        }
    }
}

/// Reads a body up to the configured limit.
///
/// A small body (every heartbeat) arrives as one data frame: that frame is returned as it is,
/// without copying it or collecting it into a buffer list.
pub(crate) async fn read_body(body: Body, state: &AppState) -> Result<Bytes, ApiError> {
    read_body_up_to(body, state.config().body_limit).await
}

/// Reads a body up to `limit` bytes (413 beyond): the batch calls' own limit.
pub(crate) async fn read_body_up_to(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = Limited::new(body, limit);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<Vec<u8>> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(&*e, limit))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        match (&first, &mut joined) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut v = Vec::with_capacity(f.len() + data.len());
                v.extend_from_slice(f);
                v.extend_from_slice(&data);
                joined = Some(v);
            }
            (Some(_), Some(v)) => v.extend_from_slice(&data),
        }
        if HttpBody::is_end_stream(&body) {
            break;
        }
    }
    Ok(match joined {
        Some(v) => Bytes::from(v),
        None => first.unwrap_or_default(),
    })
}

fn body_error(e: &(dyn std::error::Error + Send + Sync + 'static), limit: usize) -> ApiError {
    if e.downcast_ref::<LengthLimitError>().is_some() {
        return ApiError::PayloadTooLarge(limit);
    }
    debug!(error = %e, "request body could not be read");
    ApiError::BadRequest("The request body could not be read.".into())
}
