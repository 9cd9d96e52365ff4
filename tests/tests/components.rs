#![allow(missing_docs)] // wasmtime::component::bindgen! output is undocumented
//! The pure and alpha components, instantiated in wasmtime straight from the
//! WIT contract and checked field by field against the original cells
//! (docs/contract.md). Independent of `cell-host` on purpose: this
//! guards the components and the contract, not the host's use of them.

use std::collections::HashMap;

use anyhow::Result;
use cellmesh_artifacts::{ALPHA_WASM, PURE_WASM};
use serde_json::Value;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "cell",
    additional_derives: [PartialEq],
});

use cellmesh::cell::types::{
    CapabilityError, CellManifest, Delivery, LogLevel, Message, Peer, Primitive, SendError,
    SyncRequest,
};

/// Store data: WASI that grants nothing, plus what the stub host records.
struct Harness {
    wasi: WasiCtx,
    table: ResourceTable,
    logs: Vec<(LogLevel, String)>,
    sent: Vec<(String, Message)>,
}

impl WasiView for Harness {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl cellmesh::cell::types::Host for Harness {}

impl cellmesh::cell::host::Host for Harness {
    fn log(&mut self, level: LogLevel, message: String, _fields: Vec<(String, String)>) {
        self.logs.push((level, message));
    }
    fn now_ms(&mut self) -> u64 {
        1_767_355_305_755
    }
    fn monotonic_ms(&mut self) -> u64 {
        0
    }
    fn config_get(&mut self, _key: String) -> Option<String> {
        None
    }
    fn config_all(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn mesh_peers(&mut self) -> Vec<Peer> {
        vec![Peer {
            cell_id: "pure".into(),
            ip: "127.0.0.1".into(),
            port: 8002,
            consciousness_level: 0.1,
            services: vec!["consciousness-primitives".into()],
            branch: "main".into(),
            cell_type: "pure_cell".into(),
            hostname: "h".into(),
            age_ms: Some(10),
        }]
    }
    fn send_message(&mut self, to_cell: String, msg: Message) -> Result<Delivery, SendError> {
        if to_cell == "pure" {
            self.sent.push((to_cell.clone(), msg));
            Ok(Delivery {
                message_id: self.sent.len() as u64,
                to_cell,
            })
        } else {
            Err(SendError::UnknownCell(to_cell))
        }
    }
}

struct Loaded {
    store: Store<Harness>,
    cell: Cell,
}

fn load(path: &str) -> Result<Loaded> {
    let engine = Engine::default();
    let component = Component::from_file(&engine, path)?;
    let mut linker = Linker::<Harness>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Cell::add_to_linker::<Harness, HasSelf<Harness>>(&mut linker, |h| h)?;
    let mut store = Store::new(
        &engine,
        Harness {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            logs: Vec::new(),
            sent: Vec::new(),
        },
    );
    let cell = Cell::instantiate(&mut store, &component, &linker)?;
    Ok(Loaded { store, cell })
}

impl Loaded {
    fn manifest(&mut self) -> CellManifest {
        self.cell
            .cellmesh_cell_guest()
            .call_manifest(&mut self.store)
            .unwrap()
    }
    fn invoke(&mut self, cap: &str, input: &str) -> Result<String, CapabilityError> {
        self.cell
            .cellmesh_cell_guest()
            .call_invoke(&mut self.store, cap, input)
            .unwrap()
    }
    fn invoke_json(&mut self, cap: &str, input: &str) -> Value {
        let out = self
            .invoke(cap, input)
            .unwrap_or_else(|e| panic!("{cap}: {e:?}"));
        serde_json::from_str(&out).unwrap()
    }
    fn sync(
        &mut self,
        peer: &str,
        level: f64,
        context: &[(&str, f64)],
    ) -> cellmesh::cell::types::SyncOutcome {
        let req = SyncRequest {
            peer_id: peer.into(),
            peer_level: level,
            context: context
                .iter()
                .map(|(n, v)| Primitive {
                    name: (*n).into(),
                    value: *v,
                })
                .collect(),
        };
        self.cell
            .cellmesh_cell_guest()
            .call_sync(&mut self.store, &req)
            .unwrap()
    }
    fn evolve(&mut self, ms: u64) -> f64 {
        self.cell
            .cellmesh_cell_guest()
            .call_evolve(&mut self.store, ms)
            .unwrap()
    }
    fn level(&mut self) -> f64 {
        self.cell
            .cellmesh_cell_guest()
            .call_state(&mut self.store)
            .unwrap()
            .consciousness_level
    }
}

fn prims(m: &[Primitive]) -> HashMap<String, f64> {
    m.iter().map(|p| (p.name.clone(), p.value)).collect()
}

#[test]
fn files_are_components() {
    for path in [PURE_WASM, ALPHA_WASM] {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(
            &bytes[..8],
            &[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00],
            "{path} is not a component"
        );
    }
}

#[test]
fn pure_manifest_matches_the_seed() -> Result<()> {
    let mut pure = load(PURE_WASM)?;
    let m = pure.manifest();
    assert_eq!(m.cell_id, "pure");
    assert_eq!(m.cell_type, "pure_cell");
    // The original pure cell's `AIOS_BRANCH` defaulted to "pure".
    assert_eq!(m.branch, "pure");
    assert_eq!(m.health_status, "pure_consciousness");
    assert_eq!(m.consciousness_level, 0.1);
    let names: Vec<_> = m.capabilities.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["consciousness-primitives"]);
    let p = prims(&m.primitives);
    assert_eq!(p.len(), 4);
    for name in ["awareness", "adaptation", "coherence", "momentum"] {
        assert_eq!(p[name], 0.1, "{name}");
    }
    assert!(
        m.labels
            .contains(&("purity_level".into(), "minimal_viable_consciousness".into()))
    );
    assert_eq!(m, pure.manifest(), "manifest must be stable across calls");
    Ok(())
}

#[test]
fn pure_sync_clamps_and_overwrites_named_primitives() -> Result<()> {
    let mut pure = load(PURE_WASM)?;
    let out = pure.sync("alpha", 5.2, &[("awareness", 0.7), ("bogus", 0.3)]);
    assert_eq!((out.old_level, out.new_level), (0.1, 1.0));
    assert!(out.primitives_updated);
    assert!(out.labels.contains(&("purity".into(), "maintained".into())));
    let state = pure
        .cell
        .cellmesh_cell_guest()
        .call_state(&mut pure.store)?;
    let p = prims(&state.primitives);
    assert_eq!(p["awareness"], 0.7);
    assert_eq!(p["coherence"], 0.1);
    let out = pure.sync("", -2.0, &[]);
    assert_eq!(out.new_level, 0.0);
    assert!(!out.primitives_updated);
    let out = pure.sync("", f64::NAN, &[("momentum", f64::INFINITY)]);
    assert_eq!(out.new_level, 0.0, "NaN must not replace the level");
    assert!(!out.primitives_updated, "a non-finite primitive is ignored");
    Ok(())
}

#[test]
fn pure_level_evolves_deterministically_within_bounds() -> Result<()> {
    let mut a = load(PURE_WASM)?;
    let mut b = load(PURE_WASM)?;
    let first = a.evolve(5_000);
    assert!(first > 0.1, "level must evolve, got {first}");
    assert_eq!(first, b.evolve(5_000), "same steps, same level");
    for _ in 0..2_000 {
        a.evolve(60_000);
    }
    let level = a.level();
    assert!(level.is_finite() && (0.0..=1.0).contains(&level));
    Ok(())
}

#[test]
fn pure_capability_blends_primitives() -> Result<()> {
    let mut pure = load(PURE_WASM)?;
    let out = pure.invoke_json(
        "consciousness-primitives",
        r#"{"blend":{"awareness":0.5},"weight":0.25}"#,
    );
    assert!((out["primitives"]["awareness"].as_f64().unwrap() - 0.2).abs() < 1e-12);
    assert!(matches!(
        pure.invoke("consciousness-primitives", r#"{"blend":{"x":1}}"#),
        Err(CapabilityError::InvalidInput(_))
    ));
    assert!(matches!(
        pure.invoke("code-analysis", "{}"),
        Err(CapabilityError::UnknownCapability(name)) if name == "code-analysis"
    ));
    Ok(())
}

#[test]
fn alpha_manifest_matches_the_seed() -> Result<()> {
    let mut alpha = load(ALPHA_WASM)?;
    let m = alpha.manifest();
    assert_eq!(m.cell_id, "alpha");
    assert_eq!(m.cell_type, "alpha_cell");
    assert_eq!(m.branch, "main");
    assert_eq!(m.identity, "AIOS Cell Alpha");
    assert_eq!(m.evolutionary_stage, "hierarchical_intelligence");
    assert_eq!(m.health_status, "healthy");
    assert_eq!(m.consciousness_level, 5.2);
    let names: Vec<_> = m.capabilities.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "code-analysis",
            "consciousness-sync",
            "dendritic-communication",
            "tachyonic-archival",
            "geometric-engine"
        ]
    );
    let p = prims(&m.primitives);
    assert_eq!(p["awareness"], 4.5);
    assert_eq!(p["adaptation"], 0.85);
    assert_eq!(p["coherence"], 0.92);
    assert_eq!(p["momentum"], 0.75);
    Ok(())
}

#[test]
fn alpha_sync_records_the_peer_and_answers_the_delta() -> Result<()> {
    let mut alpha = load(ALPHA_WASM)?;
    let out = alpha.sync("pure", 0.1, &[]);
    assert_eq!(out.old_level, 5.2);
    assert_eq!(out.new_level, 5.2);
    assert!((out.delta - 5.1).abs() < 1e-12);
    // The recorded sync pulls alpha's evolution towards the peer.
    let mut lone = load(ALPHA_WASM)?;
    let pulled = alpha.evolve(5_000);
    let grown = lone.evolve(5_000);
    assert!(
        grown > 5.2,
        "alpha's level must no longer be frozen: {grown}"
    );
    assert!(pulled < 5.2, "a synced low peer pulls alpha down: {pulled}");
    let out = alpha.sync("x", f64::NEG_INFINITY, &[]);
    assert_eq!(out.delta, 0.0);
    Ok(())
}

#[test]
fn alpha_every_capability_answers_its_example_input() -> Result<()> {
    let mut alpha = load(ALPHA_WASM)?;
    for cap in alpha.manifest().capabilities {
        let out = alpha.invoke(&cap.name, &cap.example_input);
        assert!(out.is_ok(), "{}: {out:?}", cap.name);
        serde_json::from_str::<Value>(&out.unwrap())?;
    }
    assert!(matches!(
        alpha.invoke("teleport", "{}"),
        Err(CapabilityError::UnknownCapability(_))
    ));
    assert!(matches!(
        alpha.invoke("geometric-engine", "not json"),
        Err(CapabilityError::InvalidInput(_))
    ));
    Ok(())
}

#[test]
fn alpha_code_analysis_measures_three_languages() -> Result<()> {
    let mut alpha = load(ALPHA_WASM)?;
    let python = "import os\n\n# helper\ndef f(x):\n    \"\"\"Doc.\n    more\"\"\"\n    if x > 1 and x < 5:\n        return [y for y in range(x) if y]\n    elif x:\n        return 1\n    return 0  # done\n\nclass A:\n    def m(self):\n        while True:\n            try:\n                pass\n            except ValueError:\n                break\n";
    let r = alpha.invoke_json(
        "code-analysis",
        &serde_json::json!({ "source": python }).to_string(),
    );
    assert_eq!(r["language"], "python");
    assert_eq!(r["total_lines"], 19);
    assert_eq!(r["blank_lines"], 2);
    assert_eq!(r["comment_lines"], 1);
    assert_eq!(r["code_lines"], 16);
    assert_eq!(r["function_count"], 2);
    // if, and, for, if, elif, while, except
    assert_eq!(r["cyclomatic_complexity"], 8);

    let rust = "use std::collections::HashMap;\n\n/// Counts words.\npub fn count(text: &str) -> HashMap<&str, usize> {\n    let mut map = HashMap::new();\n    for w in text.split_whitespace() {\n        // tally\n        *map.entry(w).or_insert(0) += 1;\n    }\n    map\n}\n\nfn classify(n: i64) -> &'static str {\n    match n {\n        i64::MIN..=-1 => \"negative\",\n        0 => \"zero\",\n        _ if n > 100 && n % 2 == 0 => \"big even\",\n        _ => \"positive\",\n    }\n}\n";
    let r = alpha.invoke_json(
        "code-analysis",
        &serde_json::json!({ "source": rust, "language": "rust" }).to_string(),
    );
    assert_eq!(r["language"], "rust");
    assert_eq!(r["language_detected"], false);
    assert_eq!(r["total_lines"], 20);
    assert_eq!(r["blank_lines"], 2);
    assert_eq!(r["comment_lines"], 2);
    assert_eq!(r["code_lines"], 16);
    assert_eq!(r["function_count"], 2);
    // for, 4 arms - 1 match, if, &&
    assert_eq!(r["cyclomatic_complexity"], 7);

    let js = "/* Fetch helpers */\nexport async function fetchAll(urls) {\n  const out = [];\n  for (const u of urls) {\n    try {\n      const r = await fetch(u);\n      if (!r.ok || r.status === 204) continue;\n      out.push(await r.json());\n    } catch (e) {\n      console.error(`failed: ${u}`);\n    }\n  }\n  return out.length ? out : null;\n}\nconst double = (xs) => xs.map((x) => x * 2);\n";
    let r = alpha.invoke_json(
        "code-analysis",
        &serde_json::json!({ "source": js }).to_string(),
    );
    assert_eq!(r["language"], "javascript");
    assert_eq!(r["total_lines"], 15);
    assert_eq!(r["blank_lines"], 0);
    assert_eq!(r["comment_lines"], 1);
    assert_eq!(r["code_lines"], 14);
    // fetchAll, two arrows
    assert_eq!(r["function_count"], 3);
    // for, if, ||, catch, ?
    assert_eq!(r["cyclomatic_complexity"], 6);
    Ok(())
}

#[test]
fn alpha_dendritic_communication_sends_through_the_host() -> Result<()> {
    let mut alpha = load(ALPHA_WASM)?;
    let out = alpha.invoke_json(
        "dendritic-communication",
        r#"{"to_cell":"*","content":"hello mesh","priority":"high"}"#,
    );
    assert_eq!(out["delivered"][0]["to_cell"], "pure");
    let (to, msg) = &alpha.store.data().sent[0];
    assert_eq!(to, "pure");
    assert_eq!(msg.content, "hello mesh");
    assert_eq!(msg.from_cell, "alpha");
    assert_eq!(msg.priority, "high");
    assert!(matches!(
        alpha.invoke("dendritic-communication", r#"{"to_cell":"ghost","content":"x"}"#),
        Err(CapabilityError::Failed(why)) if why.contains("ghost")
    ));
    Ok(())
}

#[test]
fn alpha_answers_messages_and_logs_through_the_host() -> Result<()> {
    let mut alpha = load(ALPHA_WASM)?;
    let msg = Message {
        from_cell: "pure".into(),
        content: "héllo".into(),
        message_type: "text".into(),
        priority: "normal".into(),
        metadata: "not json {".into(),
    };
    let reply = alpha
        .cell
        .cellmesh_cell_guest()
        .call_handle_message(&mut alpha.store, &msg)?
        .expect("alpha answers");
    assert_eq!(reply.message_type, "ack");
    assert!(reply.content.contains("from pure"), "{}", reply.content);
    assert!(
        alpha
            .store
            .data()
            .logs
            .iter()
            .any(|(_, m)| m == "message received")
    );
    alpha
        .cell
        .cellmesh_cell_guest()
        .call_shutdown(&mut alpha.store)?;
    Ok(())
}
