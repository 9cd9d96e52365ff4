//! The compose project of one run: its names, its environment, the Compose
//! commands on it, and the drop guard that removes every container,
//! network, volume and image tag it made.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::bounds::{DENSE_ADMIN_PORT, DENSE_CELLS, DENSE_PORTS, HEARTBEAT, TTL};
use crate::discovery::Discovery;
use crate::http::Http;
use crate::leftovers::{PROJECT_PREFIX, TAG_PREFIX, unique_suffix};
use crate::{docker, paths, process};

/// A compose project of this test; dropping it removes every container,
/// network, volume and image tag the test made.
pub struct Cluster {
    /// The Compose command (`docker compose` or `docker-compose`).
    pub compose: Vec<String>,
    /// The project name: [`PROJECT_PREFIX`] and the run's suffix.
    pub project: String,
    /// The image tag: [`TAG_PREFIX`] and the run's suffix.
    pub tag: String,
    /// The client for the published APIs.
    pub http: Http,
    /// Discovery at its published address.
    pub discovery: Discovery,
    /// Set when the checks passed: the guard then skips the compose logs.
    pub succeeded: bool,
    file: PathBuf,
    env: Vec<(&'static str, String)>,
    images_built: bool,
}

impl Cluster {
    /// A project with this run's names and the test's intervals; nothing
    /// runs until [`Self::build_images`] and `up`.
    pub fn new(compose: Vec<String>) -> Result<Self> {
        let suffix = unique_suffix();
        let tag = format!("{TAG_PREFIX}{suffix}");
        let ms = |d: Duration| d.as_millis().to_string();
        // Every variable the compose file reads, so nothing from the
        // caller's environment leaks in. Host ports empty: ephemeral.
        let env = vec![
            ("CELLMESH_TAG", tag.clone()),
            ("CELLMESH_PUBLISH_ADDR", "127.0.0.1".to_owned()),
            ("DISCOVERY_HOST_PORT", String::new()),
            ("PURE_HOST_PORT", String::new()),
            ("ALPHA_HOST_PORT", String::new()),
            ("DISCOVERY_PORT", "8001".to_owned()),
            ("PURE_PORT", "8002".to_owned()),
            ("ALPHA_PORT", "8000".to_owned()),
            ("CELL_ID", "primary".to_owned()),
            ("DISCOVERY_TTL", format!("{}ms", ms(TTL))),
            ("DISCOVERY_STARTUP_GRACE", "0s".to_owned()),
            ("CELLMESH_HEARTBEAT_MS", ms(HEARTBEAT)),
            ("AIOS_BRANCH", "main".to_owned()),
            ("PURE_CELL_ID", "pure".to_owned()),
            ("ALPHA_CELL_ID", "alpha".to_owned()),
            ("PURE_UNIQUE_ID", "false".to_owned()),
            ("DENSE_REPLICAS", DENSE_CELLS.to_string()),
            (
                "DENSE_PORT_RANGE",
                format!("{}-{}", DENSE_PORTS.start(), DENSE_PORTS.end()),
            ),
            ("DENSE_CELL_ID", "dense".to_owned()),
            ("DENSE_ADMIN_PORT", DENSE_ADMIN_PORT.to_string()),
            ("DENSE_ADMIN_HOST_PORT", String::new()),
            ("DISCOVERY_TOKEN", String::new()),
            ("HEALTHCHECK_INTERVAL", "2s".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ];
        let http = Http::new()?;
        Ok(Self {
            compose,
            project: format!("{PROJECT_PREFIX}{suffix}"),
            tag,
            discovery: Discovery::new(http.clone()),
            http,
            succeeded: false,
            file: paths::compose_file(),
            env,
            images_built: false,
        })
    }

    /// `examples/compose/build-images --tag <ours>`, its output streamed.
    pub fn build_images(&mut self) -> Result<()> {
        let script = paths::build_images_script();
        let mut cmd = Command::new(&script);
        cmd.args(["--tag", &self.tag])
            .current_dir(paths::repo_root());
        self.images_built = true; // from here on, the guard removes the tags
        let status = process::run_streamed(&mut cmd, Duration::from_secs(1200))?;
        ensure!(status.success(), "{} failed ({status})", script.display());
        Ok(())
    }

    fn compose_cmd(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(&self.file)
            .args(args)
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("COMPOSE_PROFILES");
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        for (key, value) in extra_env {
            cmd.env(key, value);
        }
        cmd
    }

    /// Runs Compose on the project with `extra_env` over the test's
    /// environment; its trimmed stdout, or an error with its stderr.
    pub fn compose_ok(
        &self,
        args: &[&str],
        extra_env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<String> {
        process::checked(&mut self.compose_cmd(args, extra_env), timeout)
    }

    /// The ids of a service's containers, running or not.
    pub fn containers(&self, service: &str) -> Result<Vec<String>> {
        let out = self.compose_ok(&["ps", "-q", service], &[], Duration::from_secs(60))?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// The id of a service's only container.
    pub fn container(&self, service: &str) -> Result<String> {
        let ids = self.containers(service)?;
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            _ => bail!("expected one {service} container, found {ids:?}"),
        }
    }

    /// `127.0.0.1:PORT` published for a service's container port, on its
    /// `index`th replica (from 1).
    pub fn published(&self, service: &str, port: u16, index: usize) -> Result<String> {
        let index = format!("--index={index}");
        let out = self.compose_ok(
            &["port", &index, service, &port.to_string()],
            &[],
            Duration::from_secs(60),
        )?;
        let addr: SocketAddr = out
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .parse()
            .with_context(|| format!("`compose port {service} {port}` printed {out:?}"))?;
        ensure!(addr.port() != 0, "{service}:{port} is not published");
        Ok(format!("127.0.0.1:{}", addr.port()))
    }

    /// Points [`Self::discovery`] at discovery's published address; its
    /// ephemeral port may change when it restarts.
    pub fn refresh_discovery_addr(&mut self) -> Result<()> {
        let addr = self.published("discovery", 8001, 1)?;
        self.discovery.set_addr(addr);
        Ok(())
    }

    /// `down -v --remove-orphans`: containers, network and volume gone.
    pub fn down(&self) -> Result<()> {
        self.compose_ok(
            &["down", "-v", "--remove-orphans", "-t", "10"],
            &[],
            Duration::from_secs(180),
        )
        .map(drop)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.succeeded {
            // Logs first, while the containers still exist.
            let mut logs = self.compose_cmd(&["logs", "--no-color", "--tail=60"], &[]);
            match process::run(&mut logs, Duration::from_secs(60)) {
                Ok(out) => say!(
                    "---- compose logs (last 60 lines per container) ----\n{}{}",
                    out.stdout,
                    out.stderr
                ),
                Err(e) => say!("cannot read the compose logs: {e:#}"),
            }
        }
        if let Err(e) = self.down() {
            say!("cleanup: compose down failed: {e:#}");
        }
        if self.images_built {
            for image in ["discovery", "cell-host"] {
                let name = format!("cellmesh/{image}:{}", self.tag);
                if let Err(e) = docker::run(&["image", "rm", &name]) {
                    say!("cleanup: cannot remove the image tag {name}: {e:#}");
                }
            }
        }
    }
}
