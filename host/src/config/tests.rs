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
    assert_eq!(args.plugin, PathBuf::from("p.wasm"));
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
