//! The `npipe` command-line tool.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (Some("info"), Some(name)) => match npipe::PipeName::new(&name).and_then(|n| n.address()) {
            Ok(address) => {
                println!("{address}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("npipe: {e}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("usage: npipe info NAME");
            ExitCode::from(2)
        }
    }
}
