//! Child processes with deadlines: a hung `docker` or Compose call fails the
//! test instead of hanging it.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// What a finished process printed, and how it ended.
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output, lossily decoded.
    pub stdout: String,
    /// Its standard error, lossily decoded.
    pub stderr: String,
}

/// The command line of `cmd`, for messages.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion, capturing its output; kills it at `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    // Both pipes drained on threads, so a chatty child never blocks on a
    // full pipe while we wait for it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let status = wait_with_deadline(&mut child, timeout, &what)?;
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Runs `cmd` with its output going to ours; kills it at `timeout`.
pub fn run_streamed(cmd: &mut Command, timeout: Duration) -> Result<ExitStatus> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    wait_with_deadline(&mut child, timeout, &what)
}

/// Runs `cmd`; its trimmed stdout, or an error with its stderr.
pub fn checked(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let what = describe(cmd);
    let out = run(cmd, timeout)?;
    ensure!(
        out.status.success(),
        "`{what}` failed ({}): {}",
        out.status,
        out.stderr.trim()
    );
    Ok(out.stdout.trim().to_owned())
}

fn wait_with_deadline(child: &mut Child, timeout: Duration, what: &str) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{what}` did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
