//! Skynet: a tree of 1,000,000 leaf goroutines, 10 children per node, each
//! returning its number; every node sums its children through their
//! JoinHandles. Prints 499999500000.
//!
//! `cargo run --release --example skynet [leaves]`

fn skynet(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let child = size / 10;
    let hs: Vec<_> = (0..10)
        .map(|i| gmp::go(move || skynet(num + i * child, child)))
        .collect();
    hs.into_iter()
        .map(|h| h.join().expect("child panicked"))
        .sum()
}

fn main() {
    let leaves: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let t = std::time::Instant::now();
    let sum = gmp::run(move || skynet(0, leaves));
    println!("{sum}");
    eprintln!("skynet({leaves}) took {:?}", t.elapsed());
    assert_eq!(sum, leaves * (leaves - 1) / 2);
}
