//! The original demo server: answers every request with `Response to: <request>`.
//!
//! A pool of threads accepts clients on one pipe (the article's `PipeManager`), each
//! serving one connection at a time; a connection may carry many requests.
//!
//! ```sh
//! cargo run -p npipe --example server -- [NAME] [THREADS]
//! cargo run -p npipe --example client -- [NAME] [REQUESTS]
//! ```

use std::sync::Arc;
use std::thread;

use npipe::{ListenerOptions, Stream};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "npipe-demo".to_owned());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(4);

    let listener = Arc::new(
        ListenerOptions::new()
            .pending_instances(threads as u32)
            .create(&name)?,
    );
    println!(
        "serving {name} at {} with {threads} threads",
        listener.address()
    );

    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let listener = Arc::clone(&listener);
            thread::spawn(move || loop {
                match listener.accept() {
                    Ok(stream) => {
                        if let Err(e) = serve(stream) {
                            eprintln!("connection ended: {e}");
                        }
                    }
                    Err(e) => eprintln!("accept failed: {e}"),
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

/// Reads requests until the client leaves, answering each one.
fn serve(mut stream: Stream) -> std::io::Result<()> {
    let mut request = Vec::new();
    while stream.recv(&mut request)?.is_some() {
        let mut reply = b"Response to: ".to_vec();
        reply.extend_from_slice(&request);
        stream.send(&reply)?;
    }
    Ok(())
}
