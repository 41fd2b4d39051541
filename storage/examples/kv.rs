//! A tiny key-value shell over the LSM `Db`.
//!
//! ```text
//! cargo run -p strata-storage --example kv -- /tmp/kvdb put apple red
//! cargo run -p strata-storage --example kv -- /tmp/kvdb get apple
//! cargo run -p strata-storage --example kv -- /tmp/kvdb delete apple
//! cargo run -p strata-storage --example kv -- /tmp/kvdb scan
//! ```

use std::process::ExitCode;

use strata_storage::{Db, Options, WriteBatch, WriteOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, rest) = match args.split_first() {
        Some((dir, rest)) if !rest.is_empty() => (dir, rest),
        _ => {
            eprintln!("usage: kv DIR (put K V | get K | delete K | scan [FROM])");
            return ExitCode::from(2);
        }
    };
    match run(dir, rest) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &str, args: &[String]) -> Result<(), strata_storage::Error> {
    let db = Db::open(dir, Options::new())?;
    let sync = WriteOptions { sync: true };
    match args {
        [cmd, k, v] if cmd == "put" => {
            let mut b = WriteBatch::new();
            b.put(k.as_bytes(), v.as_bytes());
            db.write(b, sync)?;
        }
        [cmd, k] if cmd == "get" => match db.get(k.as_bytes())? {
            Some(v) => println!("{}", String::from_utf8_lossy(&v)),
            None => println!("(not found)"),
        },
        [cmd, k] if cmd == "delete" => {
            let mut b = WriteBatch::new();
            b.delete(k.as_bytes());
            db.write(b, sync)?;
        }
        [cmd, rest @ ..] if cmd == "scan" => {
            let from = rest
                .first()
                .map(|s| s.as_bytes().to_vec())
                .unwrap_or_default();
            for kv in db.scan(from..)? {
                let (k, v) = kv?;
                println!(
                    "{}\t{}",
                    String::from_utf8_lossy(&k),
                    String::from_utf8_lossy(&v)
                );
            }
        }
        _ => {
            return Err(strata_storage::Error::InvalidArgument(format!(
                "unknown command {args:?}"
            )))
        }
    }
    db.close()
}
