//! The original demo server on `npipe::Server`: answers every request with
//! "Response to: <request>" until Ctrl-C, then shuts down gracefully.
//!
//! ```text
//! cargo run -p npipe --features tokio --example tokio_server -- [NAME]
//! npipe call NAME hello      # in another terminal
//! ```

use std::time::Duration;

use npipe::{Request, Response, Server};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "demo".to_owned());
    let server = Server::builder(&name)
        .pending_instances(4)
        .max_instances(Some(64))
        .idle_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(5)))
        .async_handler(|request: Request| async move {
            let mut reply = b"Response to: ".to_vec();
            reply.extend_from_slice(request.body());
            Response::from(reply)
        })
        .bind()?;
    let handle = server.handle();
    println!(
        "serving {} at {} (Ctrl-C stops)",
        server.name(),
        server.address()
    );
    server.run_until(tokio::signal::ctrl_c()).await?;
    println!("stopped: {:?}", handle.stats());
    Ok(())
}
