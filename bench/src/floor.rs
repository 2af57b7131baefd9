//! Floors measured in the same run: a raw Unix-socket relay hop, an append + fsync, process
//! start-up. Our figures are printed as ratios to these, so a noisy machine moves both alike.

use anyhow::{Context, Result};
use std::io::{Read, Seek, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `agent-team-bench relay SOCKET`: accept A then B, copy everything from A to B.
pub fn relay_main(socket: &Path) -> Result<()> {
    let listener = UnixListener::bind(socket)?;
    let (mut a, _) = listener.accept()?;
    let (mut b, _) = listener.accept()?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = a.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        b.write_all(&buf[..n])?;
    }
}

/// A relay process and its two ends.
pub struct Relay {
    child: Child,
    /// The sending end.
    pub a: UnixStream,
    /// The receiving end.
    pub b: UnixStream,
}

impl Relay {
    /// Starts `agent-team-bench relay` in its own process and connects both ends.
    pub fn start(dir: &Path) -> Result<Self> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let sock = dir.join(format!(
            "relay-{}.sock",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let child = Command::new(std::env::current_exe()?)
            .arg("relay")
            .arg(&sock)
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start the relay")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let a = loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        };
        let b = UnixStream::connect(&sock)?;
        Ok(Relay { child, a, b })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One-way latencies of `n` frames of `size` bytes through the relay, in seconds.
pub fn relay_latency(dir: &Path, n: usize, size: usize) -> Result<Vec<f64>> {
    let relay = Relay::start(dir)?;
    let mut a = relay.a.try_clone()?;
    let mut b = relay.b.try_clone()?;
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let reader = std::thread::spawn(move || -> Result<()> {
        let mut buf = vec![0u8; size];
        for _ in 0..n {
            b.read_exact(&mut buf)?;
            let _ = tx.send(Instant::now());
        }
        Ok(())
    });
    let frame = vec![b'x'; size];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        a.write_all(&frame)?;
        let t1 = rx.recv()?;
        out.push((t1 - t0).as_secs_f64());
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("relay reader panicked"))??;
    Ok(out)
}

/// Frames per second through the relay when the sender never waits (batched writes).
pub fn relay_throughput(dir: &Path, secs: f64, size: usize) -> Result<f64> {
    let relay = Relay::start(dir)?;
    let mut a = relay.a.try_clone()?;
    let mut b = relay.b.try_clone()?;
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let writer = std::thread::spawn(move || -> Result<()> {
        let batch = vec![b'x'; size * 64];
        while Instant::now() < stop {
            a.write_all(&batch)?;
        }
        a.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    });
    let started = Instant::now();
    let mut total = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = b.read(&mut buf)?;
        if n == 0 || Instant::now() > stop + Duration::from_millis(200) {
            break;
        }
        total += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = writer.join();
    Ok(total as f64 / size as f64 / elapsed)
}

/// Latencies of `n` writes of `size` bytes, each followed by fdatasync, in seconds. The writes
/// overwrite a file already allocated and synced, as the daemon's commits overwrite its WAL
/// after the first checkpoint rewound it; on ext4 that is the cheapest durable write (an
/// append, which also changes the file's size, costs ~40 % more).
pub fn fsync_latency(dir: &Path, n: usize, size: usize) -> Result<Vec<f64>> {
    let path = dir.join("fsync-floor.bin");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    f.write_all(&vec![0u8; n * size + 4096])?;
    f.sync_all()?;
    f.seek(std::io::SeekFrom::Start(0))?;
    let rec = vec![b'r'; size];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        f.write_all(&rec)?;
        f.sync_data()?;
        out.push(t0.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_file(&path);
    Ok(out)
}
