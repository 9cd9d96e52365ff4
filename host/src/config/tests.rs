//! Tests of the command line and its conversion to [`super::HostConfig`].

use super::*;

#[test]
fn config_pairs_keep_their_order_and_reject_missing_equals() {
    let args = Args::try_parse_from([
        "cell-host",
        "--plugin",
        "p.wasm",
        "--config",
        "b=2",
        "--config",
        "a=x=y",
    ])
    .unwrap();
    assert_eq!(
        args.config,
        vec![("b".into(), "2".into()), ("a".into(), "x=y".into())]
    );
    assert!(Args::try_parse_from(["cell-host", "--plugin", "p", "--config", "nokey"]).is_err());
}

#[test]
fn plain_runs_parse_as_before_and_subcommands_do_not_mix_with_them() {
    let Cli::Run(args) = Cli::try_parse_from(["cell-host", "--plugin", "p.wasm"]).unwrap() else {
        panic!("a plain run")
    };
    assert_eq!(args.plugin, vec![PathBuf::from("p.wasm")]);
    let Cli::Command(Command::Conformance(c)) = Cli::try_parse_from([
        "cell-host",
        "conformance",
        "x.wasm",
        "--json",
        "r.json",
        "--call-timeout-ms",
        "50",
    ])
    .unwrap() else {
        panic!("the conformance subcommand")
    };
    assert_eq!(c.plugin, PathBuf::from("x.wasm"));
    assert_eq!(c.json, Some(PathBuf::from("r.json")));
    assert_eq!(c.limits().call_timeout, Duration::from_millis(50));
    // A run's flags conflict with the subcommand; a run needs --plugin.
    assert!(Cli::try_parse_from(["cell-host", "--plugin", "p", "conformance", "x"]).is_err());
    assert!(Cli::try_parse_from(["cell-host"]).is_err());
    assert!(Cli::try_parse_from(["cell-host", "conformance"]).is_err());
    assert!(
        Cli::try_parse_from(["cell-host", "conformance", "x", "--call-timeout-ms", "0"]).is_err()
    );
}

fn config(extra: &[&str]) -> Result<HostConfig, ConfigError> {
    let argv = ["cell-host", "--plugin", "p.wasm"].iter().chain(extra);
    HostConfig::try_from(Args::try_parse_from(argv).unwrap())
}

#[test]
fn port_overrides_listen_port() {
    let config = config(&["--listen", "127.0.0.1:1", "--port", "9"]).unwrap();
    assert_eq!(config.listen, "127.0.0.1:9".parse().unwrap());
}

/// Guards that the flags' defaults are the types' defaults.
#[test]
fn flag_defaults_are_the_domain_defaults() {
    let config = config(&["--no-cache"]).unwrap();
    assert_eq!(config.limits, SandboxLimits::default());
    assert_eq!(config.lifecycle, LifecycleSettings::default());
    assert_eq!(config.shutdown, ShutdownSettings::default());
    assert_eq!(config.http_timeout, DEFAULT_HTTP_TIMEOUT);
    assert_eq!(config.server, ServerLimits::default());
    assert_eq!(config.discovery_limits, DiscoveryLimits::default());
    assert_eq!(config.plugin_watch, PluginWatchSettings::default());
    assert_eq!(config.peer_policy, PeerPolicy::default());
    assert!(config.register_peer);
    assert_eq!(config.cache_dir, None);
    assert_eq!(config.advertise, None);
}

#[test]
fn advertise_and_cell_id_are_checked_naming_the_flag() {
    let config = config(&["--advertise", "[::1]:7000", "--cell-id", "a.b-c_1"]).unwrap();
    let advertise = config.advertise.unwrap();
    assert_eq!((advertise.host.as_str(), advertise.port), ("::1", 7000));
    assert_eq!(config.cell_id.as_deref(), Some("a.b-c_1"));
    for bad in ["nohost", ":80", "h:port", "h:70000"] {
        let error = self::config(&["--advertise", bad]).unwrap_err();
        assert_eq!(error, ConfigError::Advertise(bad.into()));
        assert!(
            error
                .to_string()
                .starts_with("--advertise must be HOST:PORT")
        );
    }
    let error = self::config(&["--cell-id", "bad id!"]).unwrap_err();
    assert_eq!(error, ConfigError::CellId("bad id!".into()));
    assert_eq!(
        error.to_string(),
        r#"--cell-id "bad id!" must be 1 to 128 characters from [A-Za-z0-9._:-]"#
    );
}

#[test]
fn peer_allow_and_no_register_peer_become_the_peer_policy() {
    let config = config(&["--peer-allow", "10.0.0.0/8, ::1", "--no-register-peer"]).unwrap();
    let ranges = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    assert_eq!(config.peer_policy, PeerPolicy::allow_only(ranges));
    assert!(!config.register_peer);
    let error = Args::try_parse_from(["cell-host", "--plugin", "p", "--peer-allow", "10/8"])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("--peer-allow") && error.contains("`10/8`"),
        "{error}"
    );
}

#[test]
fn wall_clock_bound_and_send_budget_flags_reach_the_limits() {
    let config = config(&["--call-timeout-ms", "800", "--send-budget-ms", "200"]).unwrap();
    // Derived: CPU deadline + send time + margin.
    assert_eq!(
        config.limits.call_wall_timeout,
        Duration::from_millis(1_250)
    );
    assert_eq!(config.limits.send_budget_time, Duration::from_millis(200));
    let config = self::config(&["--call-wall-timeout-ms", "9000", "--send-budget", "3"]).unwrap();
    assert_eq!(config.limits.call_wall_timeout, Duration::from_secs(9));
    assert_eq!(config.limits.send_budget_count, 3);
    let argv = ["cell-host", "--plugin", "p", "--call-wall-timeout-ms", "0"];
    assert!(Args::try_parse_from(argv).is_err());
}

#[test]
fn zero_intervals_become_one_millisecond_and_cache_flags_resolve() {
    let config = config(&[
        "--heartbeat-ms",
        "0",
        "--register-base-ms",
        "0",
        "--cache-dir",
        "/tmp/c",
        "--memory-limit-mb",
        "3",
    ])
    .unwrap();
    assert_eq!(config.lifecycle.heartbeat, Duration::from_millis(1));
    assert_eq!(config.lifecycle.backoff.base, Duration::from_millis(1));
    assert_eq!(config.cache_dir, Some(PathBuf::from("/tmp/c")));
    assert_eq!(config.limits.memory_limit_bytes, 3 << 20);
    let config = self::config(&["--cache-dir", "/tmp/c", "--no-cache"]).unwrap();
    assert_eq!(config.cache_dir, None);
}

fn fleet(argv: &[&str]) -> Result<FleetConfig, ConfigError> {
    let argv = ["cell-host"].iter().chain(argv);
    FleetConfig::try_from(Args::try_parse_from(argv).unwrap())
}

fn run_config(argv: &[&str]) -> RunConfig {
    let argv = ["cell-host"].iter().chain(argv);
    RunConfig::try_from(Args::try_parse_from(argv).unwrap()).unwrap()
}

#[test]
fn one_plugin_stays_a_single_cell_and_fleet_flags_make_a_fleet() {
    assert!(matches!(
        run_config(&["--plugin", "p.wasm", "--unique-id"]),
        RunConfig::Cell(_)
    ));
    for extra in [
        &["--plugin", "q.wasm"][..],
        &["--replicas", "2"],
        &["--port-range", "9000-9010"],
        &["--admin-listen", "127.0.0.1:0"],
    ] {
        let mut argv = vec!["--plugin", "p.wasm"];
        argv.extend(extra);
        assert!(
            matches!(run_config(&argv), RunConfig::Fleet(_)),
            "{extra:?}"
        );
        let args = Args::try_parse_from(["cell-host"].iter().chain(&argv)).unwrap();
        assert_eq!(
            HostConfig::try_from(args).unwrap_err(),
            ConfigError::ManyCells
        );
    }
    // --replicas 1 is the default, not a fleet.
    assert!(matches!(
        run_config(&["--plugin", "p.wasm", "--replicas", "1"]),
        RunConfig::Cell(_)
    ));
}

#[test]
fn plugins_times_replicas_become_cells_with_distinct_ports() {
    let config = fleet(&[
        "--plugin",
        "a.wasm",
        "--plugin",
        "b.wasm",
        "--replicas",
        "3",
        "--listen",
        "127.0.0.1:8000",
        "--port-range",
        "9000-9005",
        "--config",
        "k=v",
        "--memory-limit-mb",
        "16",
        "--host-id",
        "rack-1.host:a",
        "--batch",
        "off",
    ])
    .unwrap();
    assert_eq!(config.cells.len(), 6);
    let ports: Vec<u16> = config.cells.iter().map(|c| c.listen.port()).collect();
    assert_eq!(ports, vec![9000, 9001, 9002, 9003, 9004, 9005]);
    assert!(config.cells.iter().all(|c| c.unique_id));
    assert!(
        config
            .cells
            .iter()
            .all(|c| c.limits.memory_limit_mib() == 16)
    );
    assert_eq!(config.cells[4].plugin, PathBuf::from("b.wasm"));
    assert_eq!(
        config.cells[0].plugin_config,
        vec![("k".into(), "v".into())]
    );
    assert_eq!(config.host_id, "rack-1.host:a");
    assert_eq!(config.batch, BatchMode::Off);
    assert_eq!(config.admin, None);
    assert_eq!(config.host.plugin, PathBuf::from("a.wasm"));
    let error = fleet(&[
        "--plugin",
        "a",
        "--replicas",
        "7",
        "--port-range",
        "9000-9005",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with("--port-range 9000-9005 has 6 free port(s) but 7 cell(s)"),
        "{error}"
    );
}

#[test]
fn host_level_flags_are_checked_naming_the_flag() {
    let error = fleet(&["--plugin", "a", "--plugin", "b", "--cell-id", "x"]).unwrap_err();
    assert_eq!(error, ConfigError::CellIdForManyPlugins(2));
    assert!(
        error
            .to_string()
            .starts_with("--cell-id names the cells of one plugin")
    );
    let config = fleet(&["--plugin", "a", "--replicas", "2", "--cell-id", "base"]).unwrap();
    assert!(
        config
            .cells
            .iter()
            .all(|c| c.cell_id.as_deref() == Some("base") && c.unique_id)
    );
    let error = fleet(&["--plugin", "a", "--replicas", "2", "--host-id", "bad id"]).unwrap_err();
    assert_eq!(error, ConfigError::HostId("bad id".into()));
    assert!(
        error
            .to_string()
            .starts_with("--host-id \"bad id\" must be 1 to 128")
    );
    let long = "h".repeat(129);
    assert!(fleet(&["--plugin", "a", "--replicas", "2", "--host-id", &long]).is_err());
    let error = fleet(&[
        "--plugin",
        "a",
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token",
        "",
    ])
    .unwrap_err();
    assert_eq!(error, ConfigError::AdminToken);
    let config = fleet(&[
        "--plugin",
        "a",
        "--admin-listen",
        "127.0.0.1:9",
        "--admin-token",
        "t",
    ])
    .unwrap();
    assert_eq!(
        config.admin,
        Some(AdminSettings {
            listen: "127.0.0.1:9".parse().unwrap(),
            token: Some("t".into())
        })
    );
    let error = fleet(&[
        "--plugin",
        "a",
        "--replicas",
        "2",
        "--memory-limit-mb",
        "5000",
    ])
    .unwrap_err();
    assert_eq!(error, ConfigError::MemoryLimit(5_000));
    // clap refuses what never parses, naming the flag.
    for argv in [
        &["--plugin", "a", "--admin-token", "t"][..],
        &["--plugin", "a", "--cells", "c.toml"],
        &["--cells", "c.toml", "--replicas", "2"],
        &["--cells", "c.toml", "--cell-id", "x"],
        &["--plugin", "a", "--replicas", "0"],
        &["--plugin", "a", "--replicas", "10001"],
        &["--plugin", "a", "--port-range", "9-8"],
        &["--plugin", "a", "--batch", "sometimes"],
    ] {
        let error = Args::try_parse_from(["cell-host"].iter().chain(argv)).unwrap_err();
        let flag = argv
            .iter()
            .rev()
            .find(|a| a.starts_with("--"))
            .unwrap()
            .to_string();
        assert!(error.to_string().contains(&flag), "{argv:?}: {error}");
    }
}

#[test]
fn advertise_in_a_fleet_keeps_only_the_host() {
    for (given, host) in [
        ("cells.example:7000", "cells.example"),
        ("cells.example", "cells.example"),
        ("10.0.0.1", "10.0.0.1"),
        ("::1", "::1"),
        ("[::1]:7000", "::1"),
        ("[fe80::1]", "fe80::1"),
    ] {
        let config = fleet(&["--plugin", "a", "--replicas", "2", "--advertise", given]).unwrap();
        assert_eq!(config.advertise_host.as_deref(), Some(host), "{given}");
    }
    for bad in ["h:port", "a b", "x/y", ":7000", ""] {
        let error = fleet(&["--plugin", "a", "--replicas", "2", "--advertise", bad]).unwrap_err();
        assert_eq!(error, ConfigError::AdvertiseHost(bad.into()), "{bad}");
    }
}

#[test]
fn default_host_ids_fit_the_id_rules() {
    let id = fleet::default_host_id("my host.example", 42);
    assert!(id.starts_with("my-host.example-42-") && id.len() == "my-host.example-42-".len() + 6);
    assert!(valid_cell_id(&id), "{id}");
    let id = fleet::default_host_id(&"h".repeat(300), 4_000_000);
    assert_eq!(id.len(), cellmesh_wire::batch::HOST_ID_MAX_LEN);
    assert!(valid_cell_id(&id));
    assert!(fleet::default_host_id("", 1).starts_with("host-1-"));
    let config = fleet(&["--plugin", "a", "--replicas", "2"]).unwrap();
    assert!(valid_cell_id(&config.host_id), "{}", config.host_id);
}

#[test]
fn a_cells_file_is_read_relative_to_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cells.toml");
    std::fs::write(
        &path,
        "[defaults]\nconfig = { region = \"eu\" }\n\n[[cell]]\nplugin = \"pure.wasm\"\nreplicas = 2\n\n[[cell]]\nplugin = \"alpha.wasm\"\nid = \"alpha\"\nport = 9100\n",
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let config = fleet(&[
        "--cells",
        path,
        "--config",
        "k=v",
        "--listen",
        "127.0.0.1:1",
    ])
    .unwrap();
    assert_eq!(config.cells.len(), 3);
    assert_eq!(config.cells[0].plugin, dir.path().join("pure.wasm"));
    assert_eq!(config.cells[2].cell_id.as_deref(), Some("alpha"));
    assert_eq!(config.cells[2].listen, "127.0.0.1:9100".parse().unwrap());
    assert_eq!(config.cells[0].listen, "127.0.0.1:0".parse().unwrap());
    assert_eq!(
        config.cells[0].plugin_config,
        vec![("k".into(), "v".into()), ("region".into(), "eu".into())]
    );
    let missing = dir.path().join("missing.toml");
    let error = fleet(&["--cells", missing.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!("--cells {}: cannot read it", missing.display())),
        "{error}"
    );
}
