//! The harness binary end to end: real server and client processes, two
//! interleaved rounds, JSON and Markdown output, and reading the JSON back.

use std::process::Command;

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_npipe-bench"))
}

/// Runs `command` and returns its stdout, failing with its stderr if it failed.
fn succeed(command: &mut Command) -> Vec<u8> {
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    out.stdout
}

#[test]
fn two_rows_in_two_rounds_give_paired_ratios_and_every_output() {
    let dir = std::env::temp_dir().join(format!("npipe-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let markdown = dir.join("bench.md");
    let json_path = dir.join("bench.json");
    let stdout = succeed(
        harness()
            .args(["--quick", "--repeat", "2", "--json", "--markdown"])
            .arg(&markdown)
            .args(["--filter", "rtt-64B/raw/same-cpu,rtt-64B/npipe/same-cpu"]),
    );
    std::fs::write(&json_path, &stdout).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert!(row["error"].is_null(), "{row}");
        assert_eq!(row["runs"].as_array().unwrap().len(), 2, "{row}");
        assert_eq!(row["placement"], "same-cpu");
        assert!(row["median_ns"].as_u64().unwrap() > 0);
    }
    let npipe = rows.iter().find(|r| r["transport"] == "npipe").unwrap();
    let ratio = npipe["ratio_vs_raw"].as_f64().unwrap();
    let range = npipe["ratio_vs_raw_range"].as_array().unwrap();
    let (lo, hi) = (range[0].as_f64().unwrap(), range[1].as_f64().unwrap());
    assert!(lo <= ratio && ratio <= hi, "{ratio} outside {lo}..{hi}");
    assert!(doc["machine"]["cpus"].as_u64().unwrap() >= 1);

    let md = std::fs::read_to_string(&markdown).unwrap();
    assert!(md.contains("| workload | placement | raw |"), "{md}");
    assert!(md.contains("| rtt-64B | same-cpu | **"), "{md}");

    // Read back: the same table without running anything.
    let again = dir.join("again.md");
    let table = succeed(
        harness()
            .arg("--from-json")
            .arg(&json_path)
            .arg("--markdown")
            .arg(&again),
    );
    assert_eq!(std::fs::read_to_string(&again).unwrap(), md);
    assert!(String::from_utf8_lossy(&table).contains("rtt-64B"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_filter_that_matches_nothing_is_an_error() {
    let out = harness()
        .args(["--filter", "no-such-row"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no row matches"));
}

#[test]
fn list_survives_a_reader_that_goes_away() {
    // A pipe whose reading end is closed before the harness starts: every
    // write to its stdout fails with EPIPE, as under `npipe-bench --list | head -1`.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    succeed(harness().arg("--list").stdout(writer));
}
