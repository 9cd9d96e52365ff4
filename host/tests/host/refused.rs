//! Refused files tests.

use crate::support::args;
use cellmesh_artifacts::{
    FIXTURE_BAD_MANIFEST_WASM, FIXTURE_MISSING_EXPORT_WASM, FIXTURE_NOT_WASM,
    FIXTURE_OTHER_VERSION_WASM, FIXTURE_OTHER_WORLD_WASM,
};

async fn refusal(plugin: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    match cell_host::start(args(plugin, "http://127.0.0.1:9", &[]), listener).await {
        Ok(_) => panic!("{plugin} was accepted"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn unfit_files_are_refused_with_what_is_wrong() {
    let text = refusal(FIXTURE_NOT_WASM).await;
    assert!(text.contains("is not a WebAssembly file"), "{text}");

    let core = std::env::temp_dir().join(format!("cellmesh-core-{}.wasm", std::process::id()));
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let text = refusal(core.to_str().unwrap()).await;
    let _ = std::fs::remove_file(&core);
    assert!(
        text.contains("is a core WebAssembly module, not a component"),
        "{text}"
    );

    let text = refusal(FIXTURE_OTHER_VERSION_WASM).await;
    assert!(
        text.contains("expected an export of `cellmesh:cell/guest@0.1.0`"),
        "{text}"
    );
    assert!(text.contains("cellmesh:cell/guest@9.0.0"), "{text}");

    let text = refusal(FIXTURE_OTHER_WORLD_WASM).await;
    assert!(
        text.contains("expected an export of `cellmesh:cell/guest@0.1.0`"),
        "{text}"
    );

    let text = refusal(FIXTURE_MISSING_EXPORT_WASM).await;
    assert!(
        text.contains("lacks the functions: state, handle-message, sync, evolve, invoke, shutdown"),
        "{text}"
    );

    let text = refusal(FIXTURE_BAD_MANIFEST_WASM).await;
    assert!(text.contains("invalid manifest"), "{text}");
    assert!(text.contains("cell-id"), "{text}");
    assert!(text.contains("more than once"), "{text}");
    assert!(text.contains("NaN is not a finite number"), "{text}");

    let text = refusal("/nonexistent/plugin.wasm").await;
    assert!(
        text.contains("cannot read plugin /nonexistent/plugin.wasm"),
        "{text}"
    );
}
