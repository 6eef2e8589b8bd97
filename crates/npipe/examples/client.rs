//! The original demo client: sends requests to the demo server and prints the replies.
//!
//! Half the requests use the article's pattern (connect, request, reply, close) through
//! `npipe::call`; the other half share one persistent connection.
//!
//! ```sh
//! cargo run -p npipe --example server -- [NAME]
//! cargo run -p npipe --example client -- [NAME] [REQUESTS]
//! ```

use std::time::Duration;

use npipe::{ErrorKind, Stream};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "npipe-demo".to_owned());
    let requests: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);

    for i in 0..requests / 2 {
        match npipe::call(
            &name,
            format!("call #{i}").as_bytes(),
            Duration::from_secs(5),
        ) {
            Ok(reply) => println!("{}", String::from_utf8_lossy(&reply)),
            Err(e) if ErrorKind::of(&e) == ErrorKind::NotFound => {
                eprintln!("no server: start one with `cargo run -p npipe --example server`");
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }

    let mut stream = Stream::connect(&name)?;
    let mut reply = Vec::new();
    for i in requests / 2..requests {
        stream.send(format!("request #{i}").as_bytes())?;
        if stream.recv(&mut reply)?.is_none() {
            eprintln!("the server closed the connection");
            break;
        }
        println!("{}", String::from_utf8_lossy(&reply));
    }
    Ok(())
}
