//! A memory cgroup for the benchmarks whose figures are rates of bytes a browser writes to disk
//! (`transfer`, `webtorrent`).
//!
//! Why: on a virtual machine whose balloon device reports free memory to the host (virtio
//! "free page reporting", as Firecracker does; this project's machine), every page the guest
//! touches for the first time since it was freed costs a fault in the host. Writing a file puts
//! its bytes in the page cache, and with gigabytes free the kernel takes fresh pages for it, so
//! every MB a download stores costs ~9–11 ms of kernel time here (`dd` of 256 MiB into a new
//! file: 2.9 s of system time; into memory freed a moment before: 0.1 s). A raw channel that
//! stores nothing never pays it. A machine whose memory stays its own pays ~0.2 ms per MB, and a
//! busy desktop recycles its page cache. In a cgroup whose memory is full (filled once here with
//! a file of its size, written back), the kernel recycles the cgroup's own pages instead, which
//! is the ordinary cost. Both the baseline and swarmdrop run in it: all browsers of the run.
//! `SWARMDROP_BENCH_CGROUP=0` runs without it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cgroup's memory limit, MiB (at most half the memory available).
const LIMIT_MIB: u64 = 3072;

/// A memory cgroup made for one benchmark run, filled with clean page cache; removed on drop.
pub struct MemCgroup {
    dir: PathBuf,
    fill: PathBuf,
    mib: u64,
}

impl MemCgroup {
    /// Makes, limits and fills the cgroup; `None` (saying why) where it cannot, or where
    /// `SWARMDROP_BENCH_CGROUP=0`.
    pub fn for_bench(fill_dir: &Path) -> Option<MemCgroup> {
        if std::env::var("SWARMDROP_BENCH_CGROUP").as_deref() == Ok("0") {
            println!("xtask: browsers run without a memory cgroup (SWARMDROP_BENCH_CGROUP=0)");
            return None;
        }
        match Self::make(fill_dir) {
            Ok(cg) => {
                println!(
                    "xtask: browsers run in a {} MiB memory cgroup filled with page cache ({}); see xtask/src/cgroup.rs",
                    cg.mib,
                    cg.dir.display()
                );
                Some(cg)
            }
            Err(why) => {
                println!("xtask: browsers run without a memory cgroup: {why}");
                None
            }
        }
    }

    fn make(fill_dir: &Path) -> Result<MemCgroup, String> {
        let mib = available_mib()
            .map_or(LIMIT_MIB, |a| LIMIT_MIB.min(a / 2))
            .max(512);
        let (dir, limit_file) = create_dir()?;
        let cg = MemCgroup {
            fill: fill_dir.join(format!("cgroup-fill-{}", std::process::id())),
            dir,
            mib,
        };
        std::fs::write(cg.dir.join(limit_file), (mib << 20).to_string())
            .map_err(|e| format!("setting its limit: {e}"))?;
        // Clean pages of the cgroup's own: a file as large as the limit, written back.
        let status = cg
            .command(
                "dd",
                &[
                    "if=/dev/zero".to_string(),
                    format!("of={}", cg.fill.display()),
                    "bs=1M".to_string(),
                    format!("count={mib}"),
                    "conv=fsync".to_string(),
                    "status=none".to_string(),
                ],
            )
            .status()
            .map_err(|e| format!("filling it: {e}"))?;
        if !status.success() {
            return Err(format!("filling it: dd failed ({status})"));
        }
        Ok(cg)
    }

    /// What the results say of the run.
    pub fn describe(&self) -> String {
        format!("browsers in a {} MiB memory cgroup", self.mib)
    }

    /// `program args`, started inside the cgroup (and all it starts).
    pub fn command(&self, program: &str, args: &[String]) -> Command {
        let mut c = crate::cmd("sh", &[]);
        c.arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(self.dir.join("cgroup.procs"))
            .arg(program)
            .args(args);
        c
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.fill);
        // The browsers are gone by now; a straggler keeps the (harmless) cgroup a moment.
        for _ in 0..20 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        println!("xtask: could not remove the cgroup {}", self.dir.display());
    }
}

fn available_mib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024)
}

/// A new cgroup under this process's own, with the name of its memory limit file (cgroup v1's
/// memory controller, else v2).
fn create_dir() -> Result<(PathBuf, &'static str), String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let name = format!("swarmdrop-bench-{}", std::process::id());
    let mut tried = Vec::new();
    // v1: "4:memory:/path"; v2: "0::/path".
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        let path = path.trim_start_matches('/');
        let (base, limit) = if controllers.split(',').any(|c| c == "memory") {
            (Path::new("/sys/fs/cgroup/memory").join(path), "memory.limit_in_bytes")
        } else if controllers.is_empty() {
            let unified = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                Path::new("/sys/fs/cgroup").join(path)
            } else {
                Path::new("/sys/fs/cgroup/unified").join(path)
            };
            let enabled = std::fs::read_to_string(unified.join("cgroup.subtree_control"))
                .is_ok_and(|s| s.split_whitespace().any(|c| c == "memory"));
            if !enabled {
                tried.push(format!("{}: no memory controller", unified.display()));
                continue;
            }
            (unified, "memory.max")
        } else {
            continue;
        };
        let dir = base.join(&name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((dir, limit)),
            Err(e) => tried.push(format!("{}: {e}", dir.display())),
        }
    }
    Err(if tried.is_empty() {
        "no memory cgroup controller".into()
    } else {
        tried.join("; ")
    })
}
