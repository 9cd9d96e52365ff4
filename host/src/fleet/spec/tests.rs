//! Tests of the cells file and of the expansion into cells.

use super::*;

fn defaults() -> CellDefaults {
    CellDefaults {
        listen: "127.0.0.1:8000".parse().unwrap(),
        unique_id: false,
        branch: Some("flags".into()),
        config: vec![("a".into(), "flag".into()), ("b".into(), "flag".into())],
        limits: LimitFlags {
            call_timeout_ms: 500,
            call_wall_timeout_ms: None,
            memory_limit_mib: 64,
            send_budget: 8,
            send_budget_ms: 1_000,
        },
    }
}

fn parse(text: &str) -> Result<Vec<CellTemplate>, SpecError> {
    parse_cells_file(Path::new("conf/cells.toml"), text)
}

const FILE: &str = r#"
[defaults]
branch = "main"
config = { region = "eu", b = "defaults" }
[defaults.limits]
call_timeout_ms = 300
memory_limit_mib = 32

[[cell]]
plugin = "pure.wasm"
id = "pure"
replicas = 3
port = 9100
config = { region = "us", n = 5, on = true }
[cell.limits]
memory_limit_mib = 16

[[cell]]
plugin = "/abs/alpha.wasm"
branch = "alpha"
"#;

#[test]
fn a_file_layers_flags_defaults_and_cells() {
    let templates = parse(FILE).unwrap();
    assert_eq!(templates.len(), 2);
    let pure = &templates[0];
    assert_eq!(pure.plugin, PathBuf::from("conf/pure.wasm"));
    assert_eq!(pure.id.as_deref(), Some("pure"));
    assert_eq!((pure.replicas, pure.port), (3, Some(9100)));
    assert_eq!(pure.branch.as_deref(), Some("main"));
    assert_eq!(
        pure.origin,
        Origin::File {
            path: "conf/cells.toml".into(),
            entry: 0,
            line: 9
        }
    );
    let alpha = &templates[1];
    assert_eq!(alpha.plugin, PathBuf::from("/abs/alpha.wasm"));
    assert_eq!(alpha.branch.as_deref(), Some("alpha"));

    let specs = expand(&templates, &defaults(), None).unwrap();
    assert_eq!(specs.len(), 4);
    let ports: Vec<u16> = specs.iter().map(|s| s.listen.port()).collect();
    assert_eq!(ports, vec![9100, 9101, 9102, 0]);
    assert!(specs.iter().all(|s| s.listen.ip().is_loopback()));
    assert_eq!(
        specs.iter().map(|s| s.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // Replicas are suffixed; a lone cell keeps its id as given.
    assert!(specs[0].unique_id && !specs[3].unique_id);
    // Flags, then [defaults], then the cell: keys in place, new ones after.
    let pairs = |s: &CellSpec| {
        s.plugin_config
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pairs(&specs[0]),
        vec!["a=flag", "b=defaults", "region=us", "n=5", "on=true"]
    );
    assert_eq!(pairs(&specs[3]), vec!["a=flag", "b=defaults", "region=eu"]);
    assert_eq!(specs[0].limits.memory_limit_mib(), 16);
    assert_eq!(specs[0].limits.call_timeout, Duration::from_millis(300));
    assert_eq!(specs[3].limits.memory_limit_mib(), 32);
    // Derived from the cell's CPU deadline, as with the flags.
    assert_eq!(
        specs[3].limits.call_wall_timeout,
        Duration::from_millis(300 + 1_000 + 250)
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_named_with_their_line() {
    let error = parse("[[cell]]\nplugin = \"p.wasm\"\nreplica = 2\n").unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, SpecError::Toml { .. }), "{error:?}");
    assert!(
        text.contains("line 3") && text.contains("unknown field `replica`"),
        "{text}"
    );
    let text = parse("[defaults]\nid = \"x\"\n[[cell]]\nplugin = \"p\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("line 2") && text.contains("unknown field `id`"),
        "{text}"
    );
    let text = parse("[[cell]]\nplugin = \"p\"\nport = 70000\n")
        .unwrap_err()
        .to_string();
    assert!(text.contains("line 3"), "{text}");
    let text = parse("[[cell]]\nplugin = \"p\"\n[cell.limits]\ncpu_ms = 1\n")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("line 4") && text.contains("unknown field `cpu_ms`"),
        "{text}"
    );
    let text = parse("[[cell]\n").unwrap_err().to_string();
    assert!(text.starts_with("--cells conf/cells.toml: ") && text.contains("line 1"));
}

#[test]
fn values_the_host_cannot_use_name_key_and_line() {
    let cases = [
        ("[[cell]]\nid = \"x\"\n", 1, "cell.plugin"),
        (
            "[[cell]]\nplugin = \"p\"\nreplicas = 0\n",
            3,
            "cell.replicas",
        ),
        ("[[cell]]\nplugin = \"p\"\nport = 0\n", 3, "cell.port"),
        ("[[cell]]\nplugin = \"p\"\nid = \"bad id\"\n", 3, "cell.id"),
        (
            "[[cell]]\nplugin = \"p\"\n\nconfig = { list = [1] }\n",
            4,
            "cell.config.list",
        ),
        (
            "[defaults.limits]\nmemory_limit_mib = 5000\n[[cell]]\nplugin = \"p\"\n",
            1,
            "defaults.limits.memory_limit_mib",
        ),
        (
            "[[cell]]\nplugin = \"p\"\nlimits = { call_timeout_ms = 0 }\n",
            3,
            "cell.limits.call_timeout_ms",
        ),
    ];
    for (text, line, key) in cases {
        match parse(text) {
            Err(SpecError::Value {
                line: at, key: k, ..
            }) => assert_eq!((at, k.as_str()), (line, key), "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    let error = parse("[[cell]]\nplugin = \"p\"\nreplicas = 0\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "--cells conf/cells.toml line 3: `cell.replicas` must be 1 to 10000, got 0"
    );
    assert_eq!(
        parse("[defaults]\nbranch = \"x\"\n").unwrap_err(),
        SpecError::NoCells("conf/cells.toml".into())
    );
    // A plugin in [defaults] serves every cell that names none.
    let templates = parse("[defaults]\nplugin = \"d.wasm\"\n[[cell]]\n[[cell]]\n").unwrap();
    assert!(
        templates
            .iter()
            .all(|t| t.plugin == Path::new("conf/d.wasm"))
    );
}

fn flags(plugins: usize, replicas: u32) -> Vec<CellTemplate> {
    (0..plugins)
        .map(|i| CellTemplate::from_flag(i, format!("p{i}.wasm").into(), None, replicas))
        .collect()
}

#[test]
fn ports_come_from_the_range_skipping_fixed_ones_else_any_free_port() {
    let range: PortRange = "9000-9004".parse().unwrap();
    let specs = expand(&flags(2, 2), &defaults(), Some(range)).unwrap();
    let ports: Vec<u16> = specs.iter().map(|s| s.listen.port()).collect();
    assert_eq!(ports, vec![9000, 9001, 9002, 9003]);
    let plugins: Vec<&str> = specs.iter().map(|s| s.plugin.to_str().unwrap()).collect();
    assert_eq!(plugins, vec!["p0.wasm", "p0.wasm", "p1.wasm", "p1.wasm"]);

    let mut templates = flags(2, 1);
    templates[1].port = Some(9001);
    let specs = expand(&templates, &defaults(), Some("9001-9002".parse().unwrap())).unwrap();
    assert_eq!(specs[0].listen.port(), 9002);
    assert_eq!(specs[1].listen.port(), 9001);

    // Without a range: any free port, but a lone cell keeps --listen.
    let specs = expand(&flags(3, 1), &defaults(), None).unwrap();
    assert!(specs.iter().all(|s| s.listen.port() == 0));
    let specs = expand(&flags(1, 1), &defaults(), None).unwrap();
    assert_eq!(specs[0].listen, defaults().listen);
}

#[test]
fn a_range_too_small_names_the_flag_and_the_counts() {
    let error = expand(
        &flags(3, 2),
        &defaults(),
        Some("9000-9004".parse().unwrap()),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "--port-range 9000-9004 has 5 free port(s) but 6 cell(s) need one: widen the range or \
         give cells a `port` in the cells file"
    );
    for bad in ["9000", "0-5", "5-4", "a-b", "1-70000"] {
        let error = bad.parse::<PortRange>().unwrap_err();
        assert!(error.contains(&format!("`{bad}`")), "{error}");
    }
    assert_eq!("7-7".parse::<PortRange>().unwrap().ports(), 1);
}

#[test]
fn ports_and_ids_given_twice_and_too_many_cells_are_refused() {
    let mut templates = flags(2, 2);
    templates[0].port = Some(9000);
    templates[1].port = Some(9001);
    let error = expand(&templates, &defaults(), None).unwrap_err();
    assert!(
        matches!(error, SpecError::PortTaken { port: 9001, .. }),
        "{error:?}"
    );
    let mut templates = flags(1, 3);
    templates[0].port = Some(65_534);
    let error = expand(&templates, &defaults(), None).unwrap_err();
    assert!(matches!(error, SpecError::PortOverflow { .. }), "{error:?}");

    let mut templates = flags(2, 1);
    templates[0].id = Some("same".into());
    templates[1].id = Some("same".into());
    let error = expand(&templates, &defaults(), None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cell id `same` is given to two cells: --plugin #1 and --plugin #2; ids must be \
         distinct (give one `replicas` or `--unique-id` to suffix them)"
    );
    let unique = CellDefaults {
        unique_id: true,
        ..defaults()
    };
    assert!(expand(&templates, &unique, None).is_ok());

    let error = expand(&flags(2, 5_001), &defaults(), None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "10002 cells asked for (2 --plugin x --replicas 5001); one host runs at most 10000"
    );
    assert_eq!(
        expand(&flags(1, 10_000), &defaults(), None).unwrap().len(),
        10_000
    );
}
