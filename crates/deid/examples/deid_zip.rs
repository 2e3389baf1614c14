//! Manual driver: `cargo run -p deid --example deid_zip -- IN.zip OUT.zip [--seed-hex HEX64]
//! [--profile basic|seed] [--series N] [--stored] [--report report.json] [--inspect]`.
//! The seed defaults to /dev/urandom (the library itself never touches OS randomness).

use std::fs::File;
use std::io::{BufReader, Read};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = Vec::new();
    let mut opts = deid::Options::new([0; 32]);
    let mut seeded = false;
    let mut report = None;
    let mut inspect = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--seed-hex" => {
                i += 1;
                let h = &args[i];
                for (k, b) in opts.seed.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&h[2 * k..2 * k + 2], 16).expect("hex seed");
                }
                seeded = true;
            }
            "--profile" => {
                i += 1;
                opts.profile = if args[i] == "seed" {
                    deid::Profile::Seed
                } else {
                    deid::Profile::Basic
                };
            }
            "--series" => {
                i += 1;
                opts.series = Some(deid::SeriesSelector::Index(args[i].parse().expect("series index")));
            }
            "--stored" => opts.compression = deid::OutputCompression::Stored,
            "--report" => {
                i += 1;
                report = Some(args[i].clone());
            }
            "--inspect" => inspect = true,
            a => pos.push(a.to_string()),
        }
        i += 1;
    }
    if !seeded {
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut opts.seed))
            .expect("urandom");
    }
    let input = BufReader::new(File::open(&pos[0]).expect("open input"));
    if inspect {
        match deid::inspect_zip(input, &opts.limits) {
            Ok(inv) => println!("{}", serde_json::to_string_pretty(&inv).unwrap_or_default()),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
        return;
    }
    let out = File::create(&pos[1]).expect("create output");
    match deid::deidentify_zip(input, out, &opts) {
        Ok(o) => {
            let j = serde_json::to_string_pretty(&o).unwrap_or_default();
            if let Some(r) = report {
                std::fs::write(r, &j).expect("write report");
            } else {
                println!("{j}");
            }
        }
        Err(e) => {
            let _ = std::fs::remove_file(&pos[1]);
            eprintln!("{e}");
            eprintln!("{}", serde_json::to_string(&e).unwrap_or_default());
            std::process::exit(2);
        }
    }
}
