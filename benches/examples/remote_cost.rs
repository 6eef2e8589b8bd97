//! The cost of npipe's remote route (`\\HOST\pipe\NAME`: ssh running `npipe bridge`
//! on HOST) against plain `ssh -L` forwarding of the same raw Unix socket, in one
//! run: round-trip latency of 64 B messages, throughput of 1 MiB messages, and the
//! time to connect. Run it with `benches/remote-cost.sh`, which starts an sshd on
//! 127.0.0.1 for it; by hand:
//!
//! ```sh
//! NPIPE_SSH="ssh -F CONFIG" NPIPE_REMOTE_NPIPE=/path/to/npipe \
//!     cargo run --release -p npipe-bench --example remote_cost -- HOST [ROUNDS]
//! ```
//!
//! The server is a raw Unix socket (`std::os::unix::net`) echo server in a process
//! of its own, bound at `/tmp/npipe-<name>`: pipe `<name>` to npipe, and the socket
//! that `ssh -L LOCAL.sock:/tmp/npipe-<name>` forwards to. Both routes use one ssh
//! command (`$NPIPE_SSH`, so the same config, keys and ciphers) to the same sshd,
//! and the same client code (npipe's message framing over the socket), so the
//! ratio is the route's: an ssh exec channel plus the bridge's relay on HOST,
//! against an ssh streamlocal channel. Rounds alternate which route goes first.
//!
//! Frames: 4-byte little-endian length + payload. The server echoes a frame whose
//! first byte is `E`; counts the bytes of the others; and answers an empty frame
//! with the count (8 bytes, little-endian) since the last one.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const RTT_WARMUP: usize = 300;
const RTT_TIMED: usize = 3000;
const RTT_BYTES: usize = 64;
const TPUT_BYTES: usize = 1 << 20;
const TPUT_FOR: Duration = Duration::from_millis(1500);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve(Path::new(args.get(1).context("--serve PATH")?));
    }
    let host = args
        .first()
        .context("usage: remote_cost HOST [ROUNDS]")?
        .clone();
    let rounds: usize = args.get(1).map_or(Ok(5), |r| r.parse())?;
    run(&host, rounds)
}

/// One measurement of one route.
#[derive(Debug, Clone, Copy)]
struct Sample {
    connect: Duration,
    rtt_median: Duration,
    rtt_p99: Duration,
    bytes_per_sec: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Npipe,
    SshL,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Npipe => "npipe `\\\\HOST\\pipe\\NAME` (ssh + npipe bridge)",
            Route::SshL => "`ssh -L LOCAL.sock:REMOTE.sock` (raw socket)",
        }
    }
}

fn run(host: &str, rounds: usize) -> Result<()> {
    let name = format!("remote-cost-{}", std::process::id());
    let socket = PathBuf::from(format!("/tmp/npipe-{name}"));
    let _ = std::fs::remove_file(&socket);
    let dir = PathBuf::from(format!("/tmp/remote-cost-fwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let forwarded = dir.join("fwd.sock");
    let _cleanup = Cleanup(vec![socket.clone(), dir.clone()]);

    let mut server = Reaped(
        Command::new(std::env::current_exe()?)
            .args(["--serve"])
            .arg(&socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the server")?,
    );
    let mut ready = String::new();
    BufReader::new(server.0.stdout.take().context("server stdout")?).read_line(&mut ready)?;
    if ready.trim() != "ready" {
        bail!("the server did not start: {ready:?}");
    }

    let ssh = std::env::var("NPIPE_SSH").unwrap_or_else(|_| "ssh".to_owned());
    let mut words = ssh.split_whitespace();
    let mut forward = Command::new(words.next().unwrap_or("ssh"));
    forward
        .args(words)
        .args([
            "-T",
            "-N",
            "-o",
            "BatchMode=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
        ])
        .arg(format!("{}:{}", forwarded.display(), socket.display()))
        .args(["--", host])
        .stdin(Stdio::null());
    let mut forward = Reaped(forward.spawn().context("starting ssh -L")?);
    let up = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&forwarded).is_err() {
        if let Some(status) = forward.0.try_wait()? {
            bail!("ssh -L exited: {status}");
        }
        if Instant::now() > up {
            bail!("ssh -L did not create {}", forwarded.display());
        }
        thread::sleep(Duration::from_millis(20));
    }

    let remote = format!(r"\\{host}\pipe\{name}");
    let mut samples: Vec<(Sample, Sample)> = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Route::Npipe, Route::SshL]
        } else {
            [Route::SshL, Route::Npipe]
        };
        let mut got = [None, None];
        for route in order {
            let connect = || -> io::Result<npipe::Stream> {
                match route {
                    Route::Npipe => npipe::Stream::connect(remote.as_str()),
                    Route::SshL => Ok(npipe::Stream::from_std(
                        UnixStream::connect(&forwarded)?,
                        npipe::Mode::Message,
                    )),
                }
            };
            let sample = measure(connect).with_context(|| format!("round {round}: {route:?}"))?;
            eprintln!("round {}: {:?} {:?}", round + 1, route, sample);
            got[usize::from(route == Route::SshL)] = Some(sample);
        }
        if let [Some(a), Some(b)] = got {
            samples.push((a, b));
        }
    }
    report(&samples, rounds);
    Ok(())
}

/// Connects, then measures round trips and throughput on the connection.
fn measure(connect: impl Fn() -> io::Result<npipe::Stream>) -> Result<Sample> {
    let start = Instant::now();
    let mut stream = connect()?;
    let connected = start.elapsed();

    let mut message = vec![b'E'; RTT_BYTES];
    let mut reply = Vec::new();
    let mut times = Vec::with_capacity(RTT_TIMED);
    for i in 0..RTT_WARMUP + RTT_TIMED {
        message[1] = i as u8;
        let t = Instant::now();
        stream.send(&message)?;
        stream.recv(&mut reply)?.context("closed")?;
        if i >= RTT_WARMUP {
            times.push(t.elapsed());
        }
        if reply != message {
            bail!("the echo differs");
        }
    }
    times.sort();

    let block = vec![b'T'; TPUT_BYTES];
    let mut sent = 0u64;
    let t = Instant::now();
    while t.elapsed() < TPUT_FOR {
        stream.send(&block)?;
        sent += block.len() as u64;
    }
    stream.send(&[])?;
    stream.recv(&mut reply)?.context("closed")?;
    let elapsed = t.elapsed();
    let counted = u64::from_le_bytes(reply.as_slice().try_into().context("an 8-byte count")?);
    if counted != sent {
        bail!("the server counted {counted} bytes, {sent} were sent");
    }
    stream.disconnect()?;
    Ok(Sample {
        connect: connected,
        rtt_median: times[times.len() / 2],
        rtt_p99: times[times.len() * 99 / 100],
        bytes_per_sec: sent as f64 / elapsed.as_secs_f64(),
    })
}

fn median(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[n / 2], values[0], values[n - 1])
}

fn report(samples: &[(Sample, Sample)], rounds: usize) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let cell = |values: Vec<f64>, unit: &str, scale: f64| {
        let (m, lo, hi) = median(values);
        format!(
            "{:.2} {unit} ({:.2}–{:.2})",
            m / scale,
            lo / scale,
            hi / scale
        )
    };
    let pick = |route: usize, f: &dyn Fn(&Sample) -> f64| -> Vec<f64> {
        samples
            .iter()
            .map(|(a, b)| f(if route == 0 { a } else { b }))
            .collect()
    };
    let ratio = |f: &dyn Fn(&Sample) -> f64| {
        let (m, lo, hi) = median(samples.iter().map(|(a, b)| f(a) / f(b)).collect());
        format!("**{m:.2}×** ({lo:.2}–{hi:.2})")
    };
    println!(
        "Medians of {rounds} rounds (lowest–highest in brackets); the ratio is npipe's route \
         over `ssh -L`, round by round.\n"
    );
    println!(
        "| row | {} | {} | ratio |",
        Route::Npipe.label(),
        Route::SshL.label()
    );
    println!("|---|---|---|---|");
    let rtt = |s: &Sample| us(s.rtt_median);
    println!(
        "| round trip, 64 B (median) | {} | {} | {} |",
        cell(pick(0, &rtt), "µs", 1.0),
        cell(pick(1, &rtt), "µs", 1.0),
        ratio(&rtt)
    );
    let p99 = |s: &Sample| us(s.rtt_p99);
    println!(
        "| round trip, 64 B (p99) | {} | {} | {} |",
        cell(pick(0, &p99), "µs", 1.0),
        cell(pick(1, &p99), "µs", 1.0),
        ratio(&p99)
    );
    let tput = |s: &Sample| s.bytes_per_sec;
    println!(
        "| throughput, 1 MiB messages | {} | {} | {} |",
        cell(pick(0, &tput), "MB/s", 1e6),
        cell(pick(1, &tput), "MB/s", 1e6),
        ratio(&tput)
    );
    let connect = |s: &Sample| s.connect.as_secs_f64() * 1e3;
    println!(
        "| connect | {} | {} | {} |",
        cell(pick(0, &connect), "ms", 1.0),
        cell(pick(1, &connect), "ms", 1.0),
        ratio(&connect)
    );
}

/// The echo server: one thread per connection, until stdin closes.
fn serve(path: &Path) -> Result<()> {
    let listener = UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))?;
    println!("ready");
    io::stdout().flush()?;
    thread::spawn(|| {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        std::process::exit(0);
    });
    for conn in listener.incoming() {
        let conn = conn?;
        thread::spawn(move || {
            let _ = serve_one(conn);
        });
    }
    Ok(())
}

fn serve_one(conn: UnixStream) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, conn.try_clone()?);
    let mut writer = conn;
    let mut payload = Vec::new();
    let mut counted = 0u64;
    loop {
        let mut header = [0u8; 4];
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(header) as usize;
        payload.resize(len, 0);
        reader.read_exact(&mut payload)?;
        if len == 0 {
            writer.write_all(&8u32.to_le_bytes())?;
            writer.write_all(&counted.to_le_bytes())?;
            counted = 0;
        } else if payload[0] == b'E' {
            let mut frame = Vec::with_capacity(4 + len);
            frame.extend_from_slice(&header);
            frame.extend_from_slice(&payload);
            writer.write_all(&frame)?;
        } else {
            counted += len as u64;
        }
    }
}

/// A child killed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Files and directories removed when dropped.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_dir_all(path);
        }
    }
}
