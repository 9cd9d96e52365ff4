//! Bad input: always a 4xx JSON error naming what was wrong, never a 500 or a panic.

use axum::http::{Method, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::*;

async fn first_error(app: &axum::Router, uri: &str, body: &[u8]) -> (StatusCode, Value) {
    let a = call(app, Method::POST, uri, Some(body), &[]).await;
    (a.status, a.json["detail"][0].clone())
}

#[tokio::test]
async fn invalid_registrations_name_the_field() {
    let (_, app) = router(cfg());
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"cell_id": "bad id!", "ip": "h", "port": 1}),
            "cell_id",
            "string_pattern_mismatch",
        ),
        (
            json!({"cell_id": "", "ip": "h", "port": 1}),
            "cell_id",
            "string_too_short",
        ),
        (
            json!({"cell_id": "x".repeat(129), "ip": "h", "port": 1}),
            "cell_id",
            "string_too_long",
        ),
        (
            json!({"cell_id": "a", "ip": "h", "port": 0}),
            "port",
            "greater_than_equal",
        ),
        (
            json!({"cell_id": "a", "ip": "h", "port": 65536}),
            "port",
            "less_than_equal",
        ),
        (
            json!({"cell_id": "a", "ip": "h", "port": 80.5}),
            "port",
            "int_from_float",
        ),
        (
            json!({"cell_id": "a", "ip": "h", "port": [1]}),
            "port",
            "int_type",
        ),
        (
            json!({"cell_id": "a", "ip": 5, "port": 1}),
            "ip",
            "string_type",
        ),
        (
            json!({"cell_id": "a", "ip": "h", "port": 1, "consciousness_level": "inf"}),
            "consciousness_level",
            "finite_number",
        ),
        (
            json!({"cell_id": "a", "ip": "h", "port": 1, "consciousness_level": "x"}),
            "consciousness_level",
            "float_parsing",
        ),
        (
            json!({"cell_id": "a", "ip": "h", "port": 1, "consciousness_level": {}}),
            "consciousness_level",
            "float_type",
        ),
        (
            json!({"cell_id": "a", "ip": "h", "port": 1, "services": "one"}),
            "services",
            "list_type",
        ),
        (
            json!({"cell_id": "a", "ip": "h", "port": 1, "services": vec!["s"; 65]}),
            "services",
            "too_long",
        ),
        (
            json!({"cell_id": "a", "ip": "h", "port": 1, "branch": "b".repeat(256)}),
            "branch",
            "string_too_long",
        ),
        (
            json!({"cell_id": "a", "ip": "h", "port": 1, "hostname": null}),
            "hostname",
            "string_type",
        ),
    ];
    for (body, field, kind) in cases {
        let (status, err) = first_error(&app, "/register", body.to_string().as_bytes()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(err["type"], kind, "{body}");
        assert_eq!(err["loc"][1], field, "{body}");
        assert!(err["msg"].as_str().unwrap().contains(field), "{err}");
    }
    let (status, err) = first_error(
        &app,
        "/register",
        br#"{"cell_id":"a","ip":"h","port":1,"services":["ok",3]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["loc"], json!(["body", "services", 1]));
    assert!(ids(&app).await.is_empty());
}

#[tokio::test]
async fn malformed_bodies_and_queries() {
    let (_, app) = router(Config {
        body_limit: 1024,
        ..cfg()
    });
    let (status, err) = first_error(&app, "/register", b"{\"cell_id\": ").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["type"], "json_invalid");
    assert_eq!(err["loc"][0], "body");
    let (status, err) = first_error(&app, "/heartbeat", b"").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["type"], "missing");
    let (status, err) = first_error(&app, "/heartbeat", b"[1,2]").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["type"], "model_attributes_type");
    let big = format!(
        "{{\"cell_id\":\"a\",\"ip\":\"{}\",\"port\":1}}",
        "x".repeat(2000)
    );
    let a = call(&app, Method::POST, "/register", Some(big.as_bytes()), &[]).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.json["detail"].as_str().unwrap().contains("1024"));
    let a = get(&app, "/peers?min_level=lots").await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json["detail"][0]["loc"], json!(["query", "min_level"]));
    let a = delete(&app, "/peer/a?incarnation=first").await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json["detail"][0]["loc"], json!(["query", "incarnation"]));
    let a = delete(&app, "/peer/%FF%FE").await;
    assert!(a.status.is_client_error(), "{}", a.status);
    let a = get(&app, "/nowhere").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json, json!({"detail": "Not Found"}));
    let a = call(&app, Method::PUT, "/register", Some(b"{}"), &[]).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.json, json!({"detail": "Method Not Allowed"}));
}

fn json_ish() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z0-9 %!.]{0,12}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("cell_id".to_owned()),
                        Just("ip".to_owned()),
                        Just("port".to_owned()),
                        Just("consciousness_level".to_owned()),
                        Just("services".to_owned()),
                        Just("incarnation".to_owned()),
                        "[a-z]{1,5}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    });
    prop_oneof![
        value.prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Whatever the body, the answer is a JSON 2xx or 4xx, never 5xx.
    #[test]
    fn arbitrary_bodies_never_cause_a_5xx(body in json_ish(), uri in prop_oneof![Just("/register"), Just("/heartbeat")]) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (status, ok) = rt.block_on(async {
            let (_, app) = router(cfg());
            let a = call(&app, Method::POST, uri, Some(&body), &[]).await;
            (a.status, a.json.is_object())
        });
        prop_assert!(status.is_success() || status.is_client_error(), "{status}");
        prop_assert!(ok);
    }
}

/// Hardening, "not an open proxy": discovery pasted `ip` into peers' URLs unvalidated, so
/// `"[::1]:18497/internal/admin?x="` made a cell POST to an internal URL. An `ip` is an address
/// or a host name, never a port, path, query or userinfo.
#[tokio::test]
async fn discovery_ip_with_a_port_path_or_userinfo_is_refused_422() {
    let (_, app) = router(cfg());
    for ip in [
        "[::1]:18497/internal/admin?x=",
        "10.0.0.1:80",
        "user@host",
        "host/path",
        "host?x=1",
        "",
    ] {
        let body = json!({"cell_id": "a", "ip": ip, "port": 1}).to_string();
        let (status, error) = first_error(&app, "/register", body.as_bytes()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "ip {ip:?}");
        assert_eq!(error["loc"], json!(["body", "ip"]), "ip {ip:?}: {error}");
        assert_eq!(
            error["type"], "string_pattern_mismatch",
            "ip {ip:?}: {error}"
        );
    }
    for ip in [
        "10.0.0.1",
        "::1",
        "[::1]",
        "pure",
        "aios-alpha_1.local",
        "a173f12aa7e0",
    ] {
        let body = json!({"cell_id": "a", "ip": ip, "port": 1}).to_string();
        let answer = call(&app, Method::POST, "/register", Some(body.as_bytes()), &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "ip {ip:?}: {}", answer.json);
    }
}
