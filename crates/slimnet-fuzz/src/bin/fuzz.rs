//! The long fuzz run: `fuzz --target <model|idx|onnx|kernels> --execs N [--seed S]
//! [--out DIR] [--hang-ms MS]`.
//!
//! A supervisor starts a worker (this binary with `--worker`) that runs inputs `start..N` and
//! announces each before running it; when the worker dies (a crash, or an out-of-memory abort
//! of the guard allocator) or stays on one input longer than `--hang-ms`, the supervisor saves
//! that input under `--out`, counts it and starts a new worker after it. At the end it prints
//! executions, panics (caught in the worker), crashes, out-of-memory aborts, hangs, inputs over
//! 1 s and the slowest input.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use slimnet_fuzz::{input, run_in_process, target, GuardAlloc, Target};

#[global_allocator]
static GUARD: GuardAlloc = GuardAlloc;

struct Args {
    target: String,
    execs: u64,
    seed: u64,
    out: String,
    hang_ms: u64,
    worker: bool,
    start: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        target: "model".into(),
        execs: 10_000,
        seed: 1,
        out: "fuzz-findings".into(),
        hang_ms: 10_000,
        worker: false,
        start: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{k}: {e}"));
        match k.as_str() {
            "--target" => a.target = v()?,
            "--execs" => a.execs = num(v()?)?,
            "--seed" => a.seed = num(v()?)?,
            "--out" => a.out = v()?,
            "--hang-ms" => a.hang_ms = num(v()?)?,
            "--start" => a.start = num(v()?)?,
            "--worker" => a.worker = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(a)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fuzz: {e}");
            std::process::exit(2);
        }
    };
    let t = match target(&a.target) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("fuzz: {e}");
            std::process::exit(2);
        }
    };
    if a.worker {
        worker(&t, &a);
    } else {
        supervise(&t, &a);
    }
}

/// Runs inputs `start..execs`, announcing each on stdout.
fn worker(t: &Target, a: &Args) {
    std::panic::set_hook(Box::new(|_| {}));
    let mut out = std::io::stdout().lock();
    for i in a.start..a.execs {
        writeln!(out, "S {i}").and_then(|_| out.flush()).ok();
        let s = run_in_process(t, a.seed, i, i + 1);
        if !s.panics.is_empty() {
            writeln!(out, "P {i}").ok();
        }
        writeln!(out, "T {i} {}", s.slowest.1.as_micros()).ok();
    }
    writeln!(out, "D").and_then(|_| out.flush()).ok();
}

#[derive(Default)]
struct Report {
    execs: u64,
    panics: Vec<u64>,
    crashes: Vec<u64>,
    ooms: Vec<u64>,
    hangs: Vec<u64>,
    slow: Vec<u64>,
    slowest: (u64, u128),
}

fn save(t: &Target, a: &Args, what: &str, i: u64) {
    std::fs::create_dir_all(&a.out).ok();
    let path = format!("{}/{}-{what}-seed{}-{i}.bin", a.out, t.name, a.seed);
    std::fs::write(&path, input(t, a.seed, i)).ok();
}

fn supervise(t: &Target, a: &Args) {
    let exe = std::env::current_exe().expect("own path");
    let started = Instant::now();
    let mut r = Report::default();
    let mut next = a.start;
    while next < a.execs {
        let mut child = Command::new(&exe)
            .args(["--worker", "--target", &a.target])
            .args(["--seed", &a.seed.to_string(), "--start", &next.to_string()])
            .args(["--execs", &a.execs.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a worker");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped");
        let err_text = std::thread::spawn(move || {
            let mut s = String::new();
            stderr.read_to_string(&mut s).ok();
            s
        });
        let mut current: Option<u64> = None;
        let mut done = false;
        let mut hung = false;
        loop {
            match rx.recv_timeout(Duration::from_millis(a.hang_ms)) {
                Ok(line) => {
                    let mut p = line.split(' ');
                    let (k, i) = (p.next(), p.next().and_then(|v| v.parse::<u64>().ok()));
                    match (k, i) {
                        (Some("S"), Some(i)) => current = Some(i),
                        (Some("P"), Some(i)) => {
                            r.panics.push(i);
                            save(t, a, "panic", i);
                        }
                        (Some("T"), Some(i)) => {
                            let us: u128 = p.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                            r.execs += 1;
                            current = None;
                            if us > 1_000_000 {
                                r.slow.push(i);
                                save(t, a, "slow", i);
                            }
                            if us > r.slowest.1 {
                                r.slowest = (i, us);
                            }
                            if r.execs.is_multiple_of(100_000) {
                                eprintln!(
                                    "{}: {} execs in {:.0} s",
                                    t.name,
                                    r.execs,
                                    started.elapsed().as_secs_f64()
                                );
                            }
                        }
                        (Some("D"), _) => done = true,
                        _ => {}
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if current.is_some() {
                        hung = true;
                        child.kill().ok();
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if done || hung {
                break;
            }
        }
        let status = child.wait().expect("worker status");
        let text = err_text.join().unwrap_or_default();
        if done && status.success() {
            break;
        }
        let i = current.unwrap_or(next);
        r.execs += 1;
        if hung {
            r.hangs.push(i);
            save(t, a, "hang", i);
        } else if text.contains("memory allocation of") {
            r.ooms.push(i);
            save(t, a, "oom", i);
        } else {
            r.crashes.push(i);
            save(t, a, "crash", i);
            eprintln!(
                "{}: input {i} crashed the worker ({status}): {text}",
                t.name
            );
        }
        next = i + 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "target {}: {} execs in {:.0} s ({:.0}/s), seed {}",
        t.name,
        r.execs,
        secs,
        r.execs as f64 / secs.max(1e-9),
        a.seed
    );
    println!(
        "panics {} {:?}, crashes {} {:?}, out-of-memory {} {:?}, hangs (> {} ms) {} {:?}",
        r.panics.len(),
        first(&r.panics),
        r.crashes.len(),
        first(&r.crashes),
        r.ooms.len(),
        first(&r.ooms),
        a.hang_ms,
        r.hangs.len(),
        first(&r.hangs),
    );
    println!(
        "inputs over 1 s: {} {:?}; slowest input: #{} at {:.1} ms",
        r.slow.len(),
        first(&r.slow),
        r.slowest.0,
        r.slowest.1 as f64 / 1000.0
    );
    let bad = r.panics.len() + r.crashes.len() + r.ooms.len() + r.hangs.len();
    std::process::exit(if bad == 0 { 0 } else { 1 });
}

fn first(v: &[u64]) -> &[u64] {
    &v[..v.len().min(10)]
}
