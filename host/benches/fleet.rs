//! Many cells in one host: the issue-11 figures (results in BENCHMARKS.md, "Many cells in one
//! host"). Rerun with:
//!
//! ```text
//! cargo bench -p cell-host --bench fleet                       # 1,000 cells
//! cargo bench -p cell-host --bench fleet -- --big              # and the 10,000-cell run
//! cargo bench -p cell-host --bench fleet -- --big --big-cells 10000,3900   # big runs, in order
//! cargo bench -p cell-host --bench fleet -- --help             # options
//! ```
//!
//! It drives the release binaries as child processes: `cell-host` (by default the one cargo
//! built with this benchmark) and `discovery` from the same directory (`--bin-dir` or
//! `CELLMESH_BENCH_BIN_DIR` to point elsewhere; build both with `cargo build --release -p
//! cell-host -p discovery`), with components from `--wasm-dir` (default: the folder
//! `cellmesh-artifacts` builds into). Every run gets a fresh discovery on a free 127.0.0.1 port
//! and a fresh host; the compile cache is filled once first, so every timed start is warm.
//!
//! 1. Sizes (default: cells/10, cells/4, cells/2, cells): `cell-host --plugin pure.wasm
//!    --replicas N`; for each, time from `spawn()` until discovery lists every cell (its
//!    `/health` `peers_count`, polled every 10 ms; then one `/peers` checks the ids and ports),
//!    RSS (`/proc/PID/status`) and PSS (`/proc/PID/smaps_rollup`) once settled; the extra memory
//!    per cell is the least-squares slope over the sizes.
//! 2. At the largest size: the requests discovery counts over several heartbeat intervals (its
//!    `/metrics`: requests per route, batch calls, cells renewed), then `POST /message` (the
//!    original body) from `--connections` workers (hyper, one request in flight each) spread
//!    over every cell: worker w serves cells w, w + C, w + 2C, ... round-robin, keeping one
//!    keep-alive connection per cell; once in a closed loop (capacity, latency at saturation)
//!    and once paced at `--rate` requests a second (latency at a fixed offered load);
//!    p50/p99/p99.9/max, throughput, the host's CPU; then one request in flight for reference;
//!    then SIGTERM (time until every cell left discovery, and until the host exited).
//! 3. The same host plus one `loop` fixture cell (`--cells FILE.toml`), kept busy with its own
//!    traffic (two senders, each call spinning until its CPU deadline), and the same two
//!    `/message` measurements on the pure cells beside it; then, for reference, the same with
//!    the loop cell in a second `cell-host` process (the same CPU taken, nothing shared).
//! 4. With `--big`: 10,000 cells (or each of `--big-cells`; discovery's `--max-peers`
//!    raised): start, register, heartbeat (still all listed after more than one TTL; cells
//!    renewed per interval), RSS, PSS, start time; or why it could not run. With
//!    `--big-port-range FIRST` each size runs a second time on fixed ports (`--port-range`)
//!    instead of ephemeral ones: binding port 0 makes the kernel search for a free port each
//!    time, which grows with the ports already bound.
//!
//! The bench is one thread (current-thread runtime), so the host has the rest of the machine;
//! on a 2-core machine they still share the cores. Load average is printed at the start and
//! end of every run.

//!
//! Modules (in `benches/fleet/`): `procs` (discovery, the host, starts and stops), `load`
//! (`/message` load and the looping cell's traffic), `memory` (RSS, PSS, per-cell slope),
//! `sys` (`/proc`, formatting).

#![allow(missing_docs)]

// The crate root is in benches/, so its modules are named by path.
#[path = "fleet/load.rs"]
mod load;
#[path = "fleet/memory.rs"]
mod memory;
#[path = "fleet/procs.rs"]
mod procs;
#[path = "fleet/sys.rs"]
mod sys;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Parser;

use load::{Load, LoopTraffic, Pace, message_load};
use memory::{Memory, PerCell, report_regression};
use procs::{Bench, Bins, HostCells, TTL_HEARTBEATS, Traffic};
use sys::{join, loadavg, mem_total, ms, nofile, nproc, raise_nofile};

#[derive(Debug, Parser)]
#[command(
    about = "Many cells in one cell-host: start time, memory, discovery requests, /message latency"
)]
struct Args {
    /// Cells of the main run.
    #[arg(long, default_value_t = 1000)]
    cells: usize,
    /// Smaller sizes for the memory regression (comma separated; default cells/10, /4, /2).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Starts of the main size timed (the last one is kept for the other measures).
    #[arg(long, default_value_t = 3)]
    starts: usize,
    /// Also run 10,000 cells (or each of `--big-cells`) in one host.
    #[arg(long)]
    big: bool,
    /// Cells of the `--big` runs, in order (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    big_cells: Vec<usize>,
    /// Also run each `--big` size with `--port-range FIRST-...` (choose ports below the
    /// kernel's ephemeral range, /proc/sys/net/ipv4/ip_local_port_range, all free).
    #[arg(long, value_name = "FIRST")]
    big_port_range: Option<u16>,
    /// Seconds of each timed `/message` run (after 1 s of warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Requests in flight for `/message`: workers, each with one keep-alive connection per
    /// cell it serves.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Offered `/message` load of the paced (open-loop) runs, requests a second in all.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// The cells' heartbeat interval (`--heartbeat-ms`); discovery's TTL is 5 of them.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Heartbeat intervals over which discovery's request counters are read.
    #[arg(long, default_value_t = 5)]
    intervals: u32,
    /// Folder holding pure.wasm and fixture-loop.wasm (default: where cellmesh-artifacts builds
    /// them).
    #[arg(long, env = "CELLMESH_BENCH_WASM_DIR")]
    wasm_dir: Option<PathBuf>,
    /// Folder holding the release `cell-host` and `discovery` (default: the folder of the
    /// `cell-host` cargo built with this benchmark).
    #[arg(long, env = "CELLMESH_BENCH_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Appended by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    raise_nofile();
    // One thread: the host gets the rest of the machine.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// The figures of the issue's table, gathered for the summary.
#[derive(Default)]
struct Summary {
    starts: Vec<Duration>,
    memory: Option<Memory>,
    per_cell: Option<PerCell>,
    traffic: Option<Traffic>,
    plain: Option<Load>,
    plain_paced: Option<Load>,
    sequential: Option<Load>,
    beside: Option<Load>,
    beside_paced: Option<Load>,
    apart: Option<Load>,
    apart_paced: Option<Load>,
    big: Vec<(String, String)>,
}

async fn run(args: Args) -> Result<()> {
    ensure!(args.cells >= 2, "--cells must be at least 2");
    ensure!(args.connections >= 1, "--connections must be at least 1");
    ensure!(args.starts >= 1, "--starts must be at least 1");
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => Path::new(env!("CARGO_BIN_EXE_cell-host"))
            .parent()
            .context("cell-host's folder")?
            .to_path_buf(),
    };
    let wasm_dir = match &args.wasm_dir {
        Some(dir) => dir.clone(),
        None => Path::new(cellmesh_artifacts::PURE_WASM)
            .parent()
            .context("components folder")?
            .to_path_buf(),
    };
    let bins = Bins {
        host: bin_dir.join("cell-host"),
        discovery: bin_dir.join("discovery"),
    };
    // The file names cellmesh-artifacts gives them, in whichever folder.
    let named = |path: &str| Path::new(path).file_name().map(|name| wasm_dir.join(name));
    let pure = named(cellmesh_artifacts::PURE_WASM).context("pure's file name")?;
    let looping = named(cellmesh_artifacts::FIXTURE_LOOP_WASM).context("loop's file name")?;
    for file in [&bins.host, &bins.discovery] {
        ensure!(
            file.is_file(),
            "{} is missing: build it with `cargo build --release -p cell-host -p discovery` \
             (same CARGO_TARGET_DIR), or point --bin-dir at it",
            file.display()
        );
    }
    for file in [&pure, &looping] {
        ensure!(
            file.is_file(),
            "{} is missing: build it with `cargo build -p cellmesh-artifacts`, or point \
             --wasm-dir at it",
            file.display()
        );
    }
    let mut sizes = if args.sizes.is_empty() {
        vec![args.cells / 10, args.cells / 4, args.cells / 2]
    } else {
        args.sizes.clone()
    };
    sizes.retain(|&n| n >= 2 && n < args.cells);
    sizes.sort_unstable();
    sizes.dedup();
    sizes.push(args.cells);

    let work = tempfile::tempdir()?;
    let bench = Bench {
        bins,
        cache: work.path().join("cache"),
        work: work.path().to_path_buf(),
        heartbeat: Duration::from_millis(args.heartbeat_ms),
    };
    println!("== fleet benchmark");
    println!("machine: {} cores (nproc), {}", nproc(), mem_total());
    println!("load average at start: {}", loadavg());
    println!(
        "options: --cells {} --sizes {} --starts {} --duration {} --connections {} --rate {} \
         --heartbeat-ms {} --intervals {}{}",
        args.cells,
        join(&sizes),
        args.starts,
        args.duration,
        args.connections,
        args.rate,
        args.heartbeat_ms,
        args.intervals,
        if args.big {
            let ports = args
                .big_port_range
                .map_or(String::new(), |p| format!(" --big-port-range {p}"));
            format!(" --big --big-cells {}{ports}", join(&args.big_cells))
        } else {
            String::new()
        }
    );
    println!(
        "binaries: {} / {}\ncomponents: {}\nRLIMIT_NOFILE of this process: {}",
        bench.bins.host.display(),
        bench.bins.discovery.display(),
        wasm_dir.display(),
        nofile()
    );

    // Fill the compile cache (pure and loop) so every timed start is warm.
    let toml = bench.cells_toml("warm", Some((&pure, 2)), Some(&looping))?;
    let warm = bench.start(&HostCells::Toml(toml), 3, 3, "warm").await?;
    println!(
        "cache filled: 2 pure + 1 loop registered in {}",
        ms(warm.took)
    );
    warm.stop().await?;

    let mut summary = Summary::default();
    sizes_and_main_run(&args, &bench, &sizes, &pure, &mut summary).await?;
    beside_the_loop(&args, &bench, &pure, &looping, &mut summary).await?;
    if args.big {
        for &n in &args.big_cells {
            let cells = HostCells::Replicas(pure.clone(), n);
            big_run(n, &cells, &args, &bench, &mut summary).await;
            if let Some(first) = args.big_port_range {
                let cells = HostCells::ReplicasOnPorts(pure.clone(), n, first);
                big_run(n, &cells, &args, &bench, &mut summary).await;
            }
        }
    }
    print_summary(&args, &summary);
    println!("\nload average at the end of the benchmark: {}", loadavg());
    Ok(())
}

/// Every size (memory, start); at the main size also the repeated starts, discovery's
/// traffic and the `/message` load.
async fn sizes_and_main_run(
    args: &Args,
    bench: &Bench,
    sizes: &[usize],
    pure: &Path,
    summary: &mut Summary,
) -> Result<()> {
    let mut memory = Vec::new();
    for &n in sizes {
        println!("\n== {n} pure cells (--plugin pure.wasm --replicas {n})");
        println!("load average at start: {}", loadavg());
        let cells = HostCells::Replicas(pure.to_path_buf(), n);
        let main = n == args.cells;
        if main {
            for _ in 1..args.starts {
                let run = bench.start(&cells, n, n, "pure").await?;
                run.report_start().await?;
                summary.starts.push(run.took);
                run.stop().await?;
            }
        }
        let run = bench.start(&cells, n, n, "pure").await?;
        run.report_start().await?;
        let mem = run.settled_memory(bench.heartbeat).await;
        println!("memory once settled: {mem}");
        if main {
            summary.starts.push(run.took);
            summary.memory = Some(Memory::read(run.pid));
            summary.traffic = Some(
                run.discovery_traffic(bench.heartbeat, args.intervals)
                    .await?,
            );
            let targets = run.cell_addrs("pure").await?;
            let (plain, paced) = both_loads(args, &targets, run.pid).await?;
            println!("/message, {n} cells: {plain}");
            println!("/message, {n} cells: {paced}");
            println!("memory after the load: {}", Memory::read(run.pid));
            summary.plain = Some(plain);
            summary.plain_paced = Some(paced);
            // Reference: one request in flight, so no queueing in the client or the host.
            let one = message_load(&targets, 1, 3, Pace::Closed, run.pid).await?;
            println!("/message, {n} cells, one connection at a time (reference): {one}");
            summary.sequential = Some(one);
        }
        memory.push((n, mem));
        run.stop().await?;
        println!("load average at end: {}", loadavg());
    }
    summary.per_cell = report_regression(&memory);
    Ok(())
}

/// The main size plus one looping cell kept busy; `/message` to the pure cells beside it.
async fn beside_the_loop(
    args: &Args,
    bench: &Bench,
    pure: &Path,
    looping: &Path,
    summary: &mut Summary,
) -> Result<()> {
    let n = args.cells;
    println!("\n== {n} pure cells + 1 loop cell (--cells FILE.toml)");
    println!("load average at start: {}", loadavg());
    let toml = bench.cells_toml("beside", Some((pure, n)), Some(looping))?;
    let run = bench
        .start(&HostCells::Toml(toml), n + 1, n + 1, "loop")
        .await?;
    run.report_start().await?;
    let targets = run.cell_addrs("pure").await?;
    let looper = run.cell_addrs("loop").await?;
    ensure!(
        looper.len() == 1,
        "expected one loop cell, found {looper:?}"
    );
    let busy = LoopTraffic::start(looper[0]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (closed, paced) = both_loads(args, &targets, run.pid).await?;
    let loop_calls = busy.stop().await;
    println!("/message, {n} cells beside the busy loop cell: {closed}");
    println!("/message, {n} cells beside the busy loop cell: {paced}");
    println!("loop cell's own traffic meanwhile: {loop_calls}");
    println!("memory after the load: {}", Memory::read(run.pid));
    summary.beside = Some(closed);
    summary.beside_paced = Some(paced);
    run.stop().await?;
    println!("load average at end: {}", loadavg());

    // The same machine load from a loop cell in another process: what is left of the
    // slowdown is the CPU the loop takes, not its sharing the host.
    println!("\n== {n} pure cells, and 1 loop cell in another cell-host");
    println!("load average at start: {}", loadavg());
    let run = bench
        .start(&HostCells::Replicas(pure.to_path_buf(), n), n, n, "pure")
        .await?;
    let toml = bench.cells_toml("apart", None, Some(looping))?;
    let apart = bench.start(&HostCells::Toml(toml), 1, 1, "apart").await?;
    let looper = apart.cell_addrs("loop").await?;
    ensure!(
        looper.len() == 1,
        "expected one loop cell, found {looper:?}"
    );
    let targets = run.cell_addrs("pure").await?;
    let busy = LoopTraffic::start(looper[0]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (closed, paced) = both_loads(args, &targets, run.pid).await?;
    let loop_calls = busy.stop().await;
    println!("/message, {n} cells, the busy loop cell in another process: {closed}");
    println!("/message, {n} cells, the busy loop cell in another process: {paced}");
    println!("loop cell's own traffic meanwhile: {loop_calls}");
    summary.apart = Some(closed);
    summary.apart_paced = Some(paced);
    apart.stop().await?;
    run.stop().await?;
    println!("load average at end: {}", loadavg());
    Ok(())
}

/// `/message` over `--connections`: closed loop (capacity), then paced at `--rate`.
async fn both_loads(
    args: &Args,
    targets: &[std::net::SocketAddr],
    pid: u32,
) -> Result<(Load, Load)> {
    let closed = message_load(targets, args.connections, args.duration, Pace::Closed, pid).await?;
    let pace = Pace::Rate(args.rate);
    let paced = message_load(targets, args.connections, args.duration, pace, pid).await?;
    Ok((closed, paced))
}

/// 10,000 cells: start, register, heartbeat, memory; or why it could not run.
async fn big_run(n: usize, cells: &HostCells, args: &Args, bench: &Bench, summary: &mut Summary) {
    let ports = match cells {
        HostCells::ReplicasOnPorts(_, _, first) => format!(", --port-range from {first}"),
        _ => ", ephemeral ports".to_owned(),
    };
    println!("\n== {n} pure cells (--big{ports})");
    println!("load average at start: {}", loadavg());
    let outcome = async {
        let run = bench.start(cells, n, n + 100, "big").await?;
        run.report_start().await?;
        let settled = run.settled_memory(bench.heartbeat).await;
        println!("memory once settled: {settled}");
        let traffic = run
            .discovery_traffic(bench.heartbeat, args.intervals)
            .await?;
        run.still_listed_after_ttl(n, bench.heartbeat * TTL_HEARTBEATS)
            .await?;
        let end = Memory::read(run.pid);
        println!("memory at the end: {end}");
        let took = run.took;
        run.stop().await?;
        anyhow::Ok(format!(
            "start -> all registered {}; {settled}; {:.2} batch heartbeats and {:.0} cells \
             renewed per interval; still all listed after one TTL",
            ms(took),
            traffic.batch_heartbeats,
            traffic.cells_renewed
        ))
    }
    .await;
    let figures = outcome.unwrap_or_else(|e| {
        println!("the {n}-cell run could not run: {e:#}");
        // The summary keeps the last line: the host's own reason.
        let reason = format!("{e:#}");
        let last = reason.lines().last().unwrap_or_default().to_owned();
        format!("could not run: {last}")
    });
    summary
        .big
        .push((format!("{n} cells in one host{ports}"), figures));
    println!("load average at end: {}", loadavg());
}

/// The issue's table, with what was measured.
fn print_summary(args: &Args, s: &Summary) {
    let n = args.cells;
    let mut out = String::new();
    let mut starts = s.starts.clone();
    starts.sort();
    if let (Some(first), Some(last)) = (starts.first(), starts.last()) {
        let _ = writeln!(
            out,
            "| {n} cells (pure, warm cache): start to all registered | median {} (min {}, \
             max {}, {} starts) | <= 2 s |",
            ms(starts[starts.len() / 2]),
            ms(*first),
            ms(*last),
            starts.len()
        );
    }
    if let Some(m) = &s.memory {
        let _ = writeln!(out, "| RSS of that host (PSS) | {m} | <= 200 MiB |");
    }
    if let Some(p) = &s.per_cell {
        let _ = writeln!(
            out,
            "| extra RSS per additional cell | {:.1} KiB (PSS {:.1} KiB); top two sizes {:.1} \
             KiB (PSS {:.1}) | <= 150 KiB |",
            p.rss, p.pss, p.rss_top, p.pss_top
        );
    }
    if let Some(t) = &s.traffic {
        let _ = writeln!(
            out,
            "| discovery requests per heartbeat interval | {:.2} batch heartbeats ({:.0} cells \
             renewed), {:.2} single heartbeats, {:.2} /peers, {:.2} in all | 1 (batched) |",
            t.batch_heartbeats, t.cells_renewed, t.single_heartbeats, t.listings, t.requests
        );
    }
    for (l, how) in [(&s.plain, "closed loop"), (&s.plain_paced, "paced")] {
        if let Some(l) = l {
            let _ = writeln!(
                out,
                "| /message p99, {} connections, {how} | {} ({l}) | <= 2 ms |",
                args.connections,
                sys::ms3(l.p99())
            );
        }
    }
    if let Some(l) = &s.sequential {
        let _ = writeln!(
            out,
            "| (reference) /message p99, one request in flight | {} ({l}) | |",
            sys::ms3(l.p99())
        );
    }
    let pairs = [
        (
            &s.beside,
            &s.plain,
            "beside one busy looping cell, closed loop",
            "<= 2x",
        ),
        (
            &s.beside_paced,
            &s.plain_paced,
            "beside one busy looping cell, paced",
            "<= 2x",
        ),
        (
            &s.apart,
            &s.plain,
            "(reference) the looping cell in another process, closed loop",
            "",
        ),
        (
            &s.apart_paced,
            &s.plain_paced,
            "(reference) the looping cell in another process, paced",
            "",
        ),
    ];
    for (beside, plain, what, target) in pairs {
        if let (Some(b), Some(p)) = (beside, plain) {
            let _ = writeln!(
                out,
                "| the same {what} | {} = {:.2}x ({b}) | {target} |",
                sys::ms3(b.p99()),
                b.p99().as_secs_f64() / p.p99().as_secs_f64()
            );
        }
    }
    for (what, big) in &s.big {
        let _ = writeln!(out, "| {what} | {big} | runs |");
    }
    println!("\n== summary\n| what | measured | target |\n|---|---|---|\n{out}");
}
