//! The HTML dashboard at `/`: one self-contained page (inline CSS and JS, no external assets)
//! that lists the live mesh and follows `/peers/watch` without reloading.

use axum::response::Html;

/// The page.
pub const PAGE: &str = include_str!("dashboard.html");

/// `GET /`.
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}
