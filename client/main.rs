//! `exchange-client`: placeholder until the load-test client lands.
fn main() {}
