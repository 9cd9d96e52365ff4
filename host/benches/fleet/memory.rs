//! RSS and PSS of the host, and the extra memory per cell over several sizes.

/// RSS and PSS of a process, KiB.
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
    pub pss: u64,
    pub pss_anon: u64,
    pub pss_file: u64,
}

impl Memory {
    pub fn read(pid: u32) -> Self {
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        Self {
            rss: field(&status, "VmRSS:"),
            hwm: field(&status, "VmHWM:"),
            pss: field(&rollup, "Pss:"),
            pss_anon: field(&rollup, "Pss_Anon:"),
            pss_file: field(&rollup, "Pss_File:"),
        }
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |kib: u64| kib as f64 / 1024.0;
        write!(
            f,
            "RSS {:.1} MiB (peak {:.1}), PSS {:.1} MiB (anon {:.1}, file {:.1})",
            mib(self.rss),
            mib(self.hwm),
            mib(self.pss),
            mib(self.pss_anon),
            mib(self.pss_file)
        )
    }
}

/// Extra memory per additional cell, KiB.
pub struct PerCell {
    /// Least-squares slope of RSS over every size.
    pub rss: f64,
    /// Least-squares slope of PSS over every size.
    pub pss: f64,
    /// RSS difference of the two largest sizes, per cell.
    pub rss_top: f64,
    /// PSS difference of the two largest sizes, per cell.
    pub pss_top: f64,
}

/// Least-squares slope of RSS and PSS over the sizes, and the top two sizes' difference;
/// printed, and returned for the summary.
pub fn report_regression(memory: &[(usize, Memory)]) -> Option<PerCell> {
    let [.., (a, ma), (b, mb)] = memory else {
        return None;
    };
    let slope = |pick: fn(&Memory) -> u64| {
        let n = memory.len() as f64;
        let mx = memory.iter().map(|(c, _)| *c as f64).sum::<f64>() / n;
        let my = memory.iter().map(|(_, m)| pick(m) as f64).sum::<f64>() / n;
        let (mut num, mut den) = (0.0, 0.0);
        for (c, m) in memory {
            num += (*c as f64 - mx) * (pick(m) as f64 - my);
            den += (*c as f64 - mx).powi(2);
        }
        let b = num / den;
        (b, my - b * mx)
    };
    let (rss, rss0) = slope(|m| m.rss);
    let (pss, pss0) = slope(|m| m.pss);
    let per = PerCell {
        rss,
        pss,
        rss_top: (mb.rss as f64 - ma.rss as f64) / (b - a) as f64,
        pss_top: (mb.pss as f64 - ma.pss as f64) / (b - a) as f64,
    };
    println!(
        "\nextra memory per cell, least squares over {} sizes: RSS {rss:.1} KiB/cell (intercept \
         {:.1} MiB), PSS {pss:.1} KiB/cell (intercept {:.1} MiB); {a} -> {b} cells: RSS {:.1} \
         KiB/cell, PSS {:.1} KiB/cell",
        memory.len(),
        rss0 / 1024.0,
        pss0 / 1024.0,
        per.rss_top,
        per.pss_top,
    );
    Some(per)
}
